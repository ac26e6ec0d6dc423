"""Submitting plugins: the automatic checklist, what is stored, and what is refused with
nothing kept."""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from fastapi import FastAPI

from app.core.body_limit import PLUGIN_SUBMISSION_BODY_BYTES
from app.core.settings import Settings
from app.main import BLOB_KEY_COLUMNS
from app.storage.scheduled import sweep_orphans
from tests.billing.conftest import Account, register
from tests.plugins.conftest import (
    PLUGINS,
    Market,
    blob_files,
    manifest,
    package,
    review,
    rows,
    submit,
    symlink_package,
)


async def nothing_kept(app: FastAPI, settings: Settings) -> None:
    assert await rows(app, "SELECT count(*) FROM plugin_versions") == [(0,)]
    assert await rows(app, "SELECT count(*) FROM plugins") == [(0,)]
    assert blob_files(settings) == set()


async def test_a_submission_is_stored_pending_review_with_its_checksum_and_findings(
    app: FastAPI, client: httpx.AsyncClient, settings: Settings
) -> None:
    author = await register(client)
    data = package({"index.js": b"console.log('hi')", "assets/icon.svg": b"<svg/>"})

    response = await submit(client, author, manifest(name="Meeting Notes"), data)

    assert response.status_code == 201, response.text
    body = response.json()
    assert body["status"] == "pending_review"
    assert body["sha256"] == hashlib.sha256(data).hexdigest()
    assert body["size_bytes"] == len(data)
    assert {f["check"] for f in body["checklist"]} == {
        "manifest_json",
        "manifest_schema",
        "permissions",
        "manifest_text",
        "package_zip",
        "zip_entries",
        "size_limits",
    }
    assert all(finding["passed"] for finding in body["checklist"])
    (key,) = blob_files(settings)
    assert key.startswith(f"{author.user_id}/plugins/")
    assert (settings.data_dir / "blobs" / key).read_bytes() == data
    stored = await rows(app, "SELECT sha256, status, checklist FROM plugin_versions")
    assert stored[0][0] == body["sha256"]
    assert stored[0][1] == "pending_review"
    assert len(stored[0][2]) == 7


def zip_of(entries: list[tuple[str, bytes]]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in entries:
            archive.writestr(zipfile.ZipInfo(name), data)
    return buffer.getvalue()


def bomb() -> bytes:
    """60 MiB of zeros that deflate to a few tens of KiB."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("zeros.bin", b"\0" * (60 * 1024 * 1024))
    return buffer.getvalue()


def lying_bomb() -> bytes:
    """A bomb whose header claims a tiny size: only decompressing can tell."""
    data = bytearray(bomb())
    # Patch the central directory's and local header's uncompressed size to 10 bytes.
    with zipfile.ZipFile(io.BytesIO(bytes(data))) as archive:
        info = archive.infolist()[0]
    real = info.file_size.to_bytes(4, "little")
    return bytes(data).replace(real, (10).to_bytes(4, "little"))


def one_entry(compression: int = zipfile.ZIP_DEFLATED) -> bytearray:
    """A zip of one text entry named `a.txt`, to patch bytes of."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as archive:
        archive.writestr("a.txt", b"hello world " * 100)
    return bytearray(buffer.getvalue())


def corrupt_stream(compression: int, *, after: int = 0) -> bytes:
    """`one_entry` with garbage in its compressed bytes, past the method's own header
    (`after` bytes; LZMA's is 9), so the codec itself fails, not the CRC check."""
    data = one_entry(compression)
    start = 30 + len("a.txt") + after  # the local header is 30 bytes, then the name
    data[start : start + 8] = b"\xff" * 8
    return bytes(data)


# Where a two-byte field of `one_entry`'s headers sits (APPNOTE.TXT 4.3.7, 4.3.12): from
# the local header's start and from the central directory header's.
_HEADER_FIELDS = {"version_needed": (4, 6), "flags": (6, 8), "method": (8, 10)}


def with_header(field: str, value: int) -> bytes:
    """`one_entry` claiming `value` for `field` in both its headers."""
    data = one_entry()
    local, central = _HEADER_FIELDS[field]
    central += data.find(b"PK\x01\x02")
    for offset in (local, central):
        data[offset : offset + 2] = value.to_bytes(2, "little")
    return bytes(data)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (zip_of([("../../etc/cron.d/evil", b"x")]), "zip_entries: a path leaving the archive"),
        (zip_of([("ok/../../evil", b"x")]), "zip_entries: a path leaving the archive"),
        (zip_of([("/etc/passwd", b"x")]), "zip_entries: an absolute path"),
        (zip_of([("C:\\Windows\\evil.dll", b"x")]), "zip_entries: an absolute path"),
        (symlink_package(), "zip_entries: a symbolic link"),
        (b"not a zip at all", "package_zip: the package is not a zip archive"),
        (bomb(), "size_limits: the package unpacks to over"),
        (lying_bomb(), "size_limits: an entry is corrupt"),
        (corrupt_stream(zipfile.ZIP_DEFLATED), "size_limits: an entry is corrupt"),
        (corrupt_stream(zipfile.ZIP_LZMA, after=9), "size_limits: an entry is corrupt"),
        (corrupt_stream(zipfile.ZIP_BZIP2), "size_limits: an entry is corrupt"),
        (
            with_header("method", 9),
            "zip_entries: a compression method other than deflate, bzip2 or lzma: 'a.txt'",
        ),
        (
            with_header("method", 99),
            "zip_entries: a compression method other than deflate, bzip2 or lzma: 'a.txt'",
        ),
        (
            with_header("flags", 0x20),
            "size_limits: an entry uses a zip feature that is not supported",
        ),
        (
            with_header("version_needed", 64),
            "package_zip: the package uses a zip feature that is not supported",
        ),
    ],
    ids=[
        "zip-slip",
        "zip-slip-nested",
        "absolute",
        "drive-letter",
        "symlink",
        "not-a-zip",
        "zip-bomb",
        "lying-zip-bomb",
        "corrupt-deflate",
        "corrupt-lzma",
        "corrupt-bzip2",
        "deflate64",
        "unknown-method",
        "patched-data-flag",
        "zip-version-too-new",
    ],
)
async def test_an_unsafe_package_is_refused_with_the_reason_and_nothing_is_kept(
    app: FastAPI, client: httpx.AsyncClient, settings: Settings, data: bytes, reason: str
) -> None:
    author = await register(client)

    response = await submit(client, author, manifest(), data)

    assert response.status_code == 422, response.text
    assert reason in response.json()["detail"]
    await nothing_kept(app, settings)


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ('{"name": "x", ', "manifest_json: the manifest is not valid JSON"),
        ("[1, 2, 3]", "manifest_json: the manifest is not a JSON object"),
        (json.dumps({"a": [[[[["deep"]]]]]}), "manifest_json: the manifest nests deeper than"),
        ("[" * 100_000 + "]" * 100_000, "manifest_json"),
        (json.dumps(manifest(version="1.0")), "manifest_schema: version"),
        (json.dumps(manifest(price_cents="100")), "manifest_schema: price_cents"),
        (json.dumps(manifest(price_cents=10)), "manifest_schema: price_cents"),
        (json.dumps(manifest(permissions="notes:read")), "manifest_schema: permissions"),
        (json.dumps(manifest(category="weapons")), "manifest_schema: category"),
        (json.dumps(manifest(extra=1)), "manifest_schema: extra"),
        (json.dumps(manifest(permissions=["root"])), "permissions: 1 permission is not allowed"),
        (
            json.dumps(manifest(permissions=["notes:read", "notes:read"])),
            "permissions: a permission is listed twice",
        ),
        (
            json.dumps(manifest(description="icon: data:image/png;base64,AAAA")),
            "manifest_text: a data: URI",
        ),
        (json.dumps(manifest(description="A" * 400)), "manifest_text: an encoded blob"),
        (json.dumps(manifest(description="bin\u0000ary")), "manifest_text: control characters"),
    ],
    ids=[
        "malformed",
        "not-an-object",
        "nested",
        "nested-past-recursion",
        "not-semver",
        "price-as-string",
        "price-below-minimum",
        "permissions-not-a-list",
        "unknown-category",
        "unknown-field",
        "unknown-permission",
        "duplicate-permission",
        "data-uri",
        "base64-blob",
        "control-characters",
    ],
)
async def test_a_bad_manifest_is_refused_with_the_reason_and_nothing_is_kept(
    app: FastAPI, client: httpx.AsyncClient, settings: Settings, body: str, reason: str
) -> None:
    author = await register(client)

    response = await submit(client, author, body)

    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert isinstance(detail, list) or reason in detail
    await nothing_kept(app, settings)


async def test_refused_permissions_are_counted_never_echoed(
    app: FastAPI, client: httpx.AsyncClient, settings: Settings
) -> None:
    author = await register(client)
    body = manifest(permissions=["notes:read", "my-secret-value", "root", "root"])

    response = await submit(client, author, body)

    assert response.status_code == 422
    assert response.json() == {
        "detail": "The submission failed the automatic checklist; nothing was kept: "
        "permissions: 2 permissions are not allowed (allowed: clients:read, clients:write, "
        "network, notes:read, notes:write, notifications, projects:read, projects:write, "
        "taskComments:read, taskComments:write, tasks:read, tasks:write, timelines:read, "
        "timelines:write); a permission is listed twice"
    }
    await nothing_kept(app, settings)


async def test_an_oversize_package_is_refused_with_413_before_it_is_read(
    app: FastAPI, client: httpx.AsyncClient, settings: Settings
) -> None:
    author = await register(client)

    response = await client.post(
        PLUGINS,
        content=b"x" * 16,
        headers={
            **author.auth,
            "Content-Type": "multipart/form-data; boundary=b",
            "Content-Length": str(PLUGIN_SUBMISSION_BODY_BYTES + 1),
        },
    )

    assert response.status_code == 413
    assert response.json() == {
        "detail": f"Request body is limited to {PLUGIN_SUBMISSION_BODY_BYTES} bytes on this route"
    }
    await nothing_kept(app, settings)


async def test_a_name_belongs_to_its_author(
    app: FastAPI, client: httpx.AsyncClient, settings: Settings
) -> None:
    first, second = await register(client), await register(client)
    assert (await submit(client, first, manifest(name="Daily Digest"))).status_code == 201

    taken = await submit(client, second, manifest(name="daily digest", version="2.0.0"))

    assert taken.status_code == 409
    assert taken.json() == {"detail": "Another author's plugin has this name"}
    assert len(blob_files(settings)) == 1  # the refused package was removed again


async def test_a_new_version_is_reviewed_again_while_the_approved_one_stays_installable(
    app: FastAPI, client: httpx.AsyncClient, market: Market, power: Account
) -> None:
    plugin_id = await market.publish(name="Digest", version="1.0.0")
    v2 = await submit(client, market.author, manifest(name="Digest", version="1.1.0"))
    assert v2.status_code == 201, v2.text
    assert v2.json()["id"] == plugin_id

    shown = await client.get(f"{PLUGINS}/{plugin_id}", headers=power.auth)
    installed = await client.post(f"{PLUGINS}/{plugin_id}/install", headers=power.auth)
    queue = await client.get(f"{PLUGINS}/review", headers=market.reviewer.auth)
    again = await submit(client, market.author, manifest(name="Digest", version="1.2.0"))

    assert shown.json()["version"] == "1.0.0"
    assert installed.status_code == 200
    assert [item["manifest"]["version"] for item in queue.json()] == ["1.1.0"]
    assert again.status_code == 409
    assert again.json()["detail"] == "Version 1.1.0 of this plugin is still waiting for review"
    approved = await review(client, market.reviewer, plugin_id)
    assert approved.status_code == 200
    shown_after = await client.get(f"{PLUGINS}/{plugin_id}", headers=power.auth)
    assert shown_after.json()["version"] == "1.1.0"
    older = await submit(client, market.author, manifest(name="Digest", version="1.1.0-rc.1"))
    assert older.status_code == 409
    assert older.json()["detail"] == "The version must be higher than 1.1.0, the plugin's latest"


async def test_the_orphan_sweep_keeps_submitted_packages(
    app: FastAPI, client: httpx.AsyncClient, settings: Settings
) -> None:
    author = await register(client)
    assert (await submit(client, author, manifest())).status_code == 201
    kept = blob_files(settings)

    removed = await sweep_orphans(
        sessionmaker=app.state.sessionmaker,
        blobs=app.state.blob_store,
        min_age=timedelta(hours=1),
        now=datetime.now(UTC) + timedelta(hours=2),
        key_columns=BLOB_KEY_COLUMNS,
    )

    assert removed == 0
    assert blob_files(settings) == kept
