"""`/backup`: whole encrypted snapshots streamed in and out, the newest BACKUP_KEEP kept."""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from tests.billing.conftest import Account, register
from tests.storage.conftest import StoredBlobs, occupy, rows, sha256, subscriber

BACKUP = "/api/v1/backup"
HISTORY = "/api/v1/backup/history"
KEY = re.compile(r"^([0-9a-f-]{36})/backups/([0-9a-f-]{36})$")
KEEP = 3
MAX_BYTES = 256 * 1024


@pytest.fixture
def storage_settings() -> dict[str, Any]:
    return {"backup_keep": KEEP, "backup_max_bytes": MAX_BYTES}


def backup_headers(
    data: bytes, *, version: str = "3", timestamp: int = 1_763_000_000_000
) -> dict[str, str]:
    return {
        "X-Backup-Version": version,
        "X-Backup-Timestamp": str(timestamp),
        "X-Backup-Checksum": sha256(data),
        "Content-Type": "application/octet-stream",
    }


async def chunks(data: bytes, size: int = 8192) -> AsyncIterator[bytes]:
    """The body as a chunked upload (no Content-Length)."""
    for start in range(0, len(data), size):
        yield data[start : start + size]


async def put_backup(
    client: httpx.AsyncClient, account: Account, data: bytes, **headers: Any
) -> str:
    response = await client.put(
        BACKUP, content=data, headers={**account.auth, **backup_headers(data, **headers)}
    )
    assert response.status_code == 200, response.text
    assert response.json()["ok"] is True
    return str(response.json()["id"])


async def history(client: httpx.AsyncClient, account: Account) -> list[dict[str, Any]]:
    response = await client.get(HISTORY, headers=account.auth)
    assert response.status_code == 200, response.text
    return list(response.json())


async def test_a_backup_streams_in_and_comes_back_byte_for_byte_with_its_headers(
    client: httpx.AsyncClient, pro: Account, stored: StoredBlobs
) -> None:
    data = os.urandom(200_000)

    response = await client.put(
        BACKUP,
        content=chunks(data),
        headers={**pro.auth, **backup_headers(data, version="3.1", timestamp=1_763_123_456_789)},
    )

    assert response.status_code == 200, response.text
    backup_id = response.json()["id"]
    assert response.json() == {"ok": True, "id": backup_id}
    (key,) = stored.listing()
    assert KEY.fullmatch(key).group(1) == str(pro.user_id)  # type: ignore[union-attr]
    assert stored.read(key) == data
    back = await client.get(BACKUP, headers=pro.auth)
    assert back.status_code == 200
    assert back.content == data
    assert back.headers["x-backup-version"] == "3.1"
    assert back.headers["x-backup-timestamp"] == "1763123456789"
    assert back.headers["x-backup-checksum"] == sha256(data)
    assert back.headers["etag"] == f'"{sha256(data)}"'
    assert back.headers["content-length"] == str(len(data))
    assert stored.uploads_in_progress() == []


async def test_if_none_match_with_the_etag_is_304(client: httpx.AsyncClient, pro: Account) -> None:
    data = b"encrypted snapshot"
    await put_backup(client, pro, data)

    cached = await client.get(BACKUP, headers={**pro.auth, "If-None-Match": f'"{sha256(data)}"'})
    stale = await client.get(BACKUP, headers={**pro.auth, "If-None-Match": '"0000"'})

    assert (cached.status_code, cached.content) == (304, b"")
    assert cached.headers["etag"] == f'"{sha256(data)}"'
    assert cached.headers["x-backup-checksum"] == sha256(data)
    assert (stale.status_code, stale.content) == (200, data)


async def test_history_is_newest_first_and_any_backup_can_be_fetched_by_id(
    client: httpx.AsyncClient, pro: Account
) -> None:
    ids = [
        await put_backup(client, pro, f"snapshot {n}".encode(), timestamp=1000 + n)
        for n in range(3)
    ]

    listed = await history(client, pro)
    oldest = await client.get(BACKUP, params={"id": ids[0]}, headers=pro.auth)
    newest = await client.get(BACKUP, headers=pro.auth)

    assert [entry["id"] for entry in listed] == ids[::-1]
    assert listed[0] == {
        "id": ids[2],
        "version": "3",
        "timestamp": 1002,
        "checksum": sha256(b"snapshot 2"),
        "size_bytes": 10,
        "created_at": listed[0]["created_at"],
    }
    assert oldest.content == b"snapshot 0"
    assert newest.content == b"snapshot 2"


async def test_only_the_newest_backup_keep_are_kept(
    app: FastAPI, client: httpx.AsyncClient, pro: Account, stored: StoredBlobs
) -> None:
    ids = [await put_backup(client, pro, f"snapshot {n}".encode()) for n in range(KEEP + 2)]

    listed = await history(client, pro)
    usage = await client.get("/api/v1/storage/usage", headers=pro.auth)

    assert [entry["id"] for entry in listed] == ids[::-1][:KEEP]
    assert sorted(stored.read(key) for key in stored.listing()) == [
        f"snapshot {n}".encode() for n in range(2, KEEP + 2)
    ]
    assert usage.json()["used_bytes"] == 10 * KEEP
    gone = await client.get(BACKUP, params={"id": ids[0]}, headers=pro.auth)
    assert (gone.status_code, gone.json()) == (404, {"detail": "No such backup"})


async def test_delete_removes_the_backup_and_its_blob(
    app: FastAPI, client: httpx.AsyncClient, pro: Account, stored: StoredBlobs
) -> None:
    kept = await put_backup(client, pro, b"kept")
    removed = await put_backup(client, pro, b"removed")

    deleted = await client.delete(f"{BACKUP}/{removed}", headers=pro.auth)

    assert (deleted.status_code, deleted.json()) == (200, {"ok": True})
    assert [entry["id"] for entry in await history(client, pro)] == [kept]
    assert [stored.read(key) for key in stored.listing()] == [b"kept"]
    again = await client.delete(f"{BACKUP}/{removed}", headers=pro.auth)
    assert again.status_code == 404


@pytest.mark.parametrize("streamed", [False, True], ids=["content-length", "chunked"])
async def test_a_checksum_mismatch_is_400_and_nothing_is_kept(
    app: FastAPI, client: httpx.AsyncClient, pro: Account, stored: StoredBlobs, streamed: bool
) -> None:
    data = os.urandom(100_000)
    headers = {**pro.auth, **backup_headers(data)}
    headers["X-Backup-Checksum"] = sha256(data[:-1] + b"\x00")

    response = await client.put(BACKUP, content=chunks(data) if streamed else data, headers=headers)

    assert response.status_code == 400
    assert response.json() == {
        "detail": "Checksum mismatch: the SHA-256 of the bytes received is not the checksum sent"
    }
    assert stored.listing() == set()
    assert stored.uploads_in_progress() == []
    assert await rows(app, "SELECT id FROM storage_backups") == []


async def test_an_empty_body_is_400(client: httpx.AsyncClient, pro: Account) -> None:
    response = await client.put(BACKUP, content=b"", headers={**pro.auth, **backup_headers(b"")})

    assert (response.status_code, response.json()) == (
        400,
        {"detail": "The body is empty; an encrypted blob never is"},
    )


@pytest.mark.parametrize(
    ("header", "value"),
    [
        ("X-Backup-Version", None),
        ("X-Backup-Version", "3 beta"),
        ("X-Backup-Timestamp", None),
        ("X-Backup-Timestamp", "yesterday"),
        ("X-Backup-Timestamp", "-5"),
        ("X-Backup-Checksum", None),
        ("X-Backup-Checksum", "abc123"),
    ],
)
async def test_missing_or_malformed_headers_are_refused_naming_the_header(
    app: FastAPI,
    client: httpx.AsyncClient,
    pro: Account,
    stored: StoredBlobs,
    header: str,
    value: str | None,
) -> None:
    data = b"encrypted snapshot"
    headers = {**pro.auth, **backup_headers(data)}
    if value is None:
        del headers[header]
    else:
        headers[header] = value

    response = await client.put(BACKUP, content=data, headers=headers)

    assert response.status_code == 422
    (error,) = response.json()["detail"]
    assert error["loc"] == ["header", header]
    assert error["type"] == ("missing" if value is None else "string_pattern_mismatch")
    assert stored.listing() == set()
    assert await rows(app, "SELECT id FROM storage_backups") == []


@pytest.mark.parametrize("header", ["X-Backup-Version", "X-Backup-Timestamp", "X-Backup-Checksum"])
async def test_a_backup_header_sent_twice_is_400_and_nothing_is_kept(
    app: FastAPI, client: httpx.AsyncClient, pro: Account, stored: StoredBlobs, header: str
) -> None:
    # One proxy joins repeated values, another keeps the first: which was meant?
    data = b"encrypted snapshot"
    headers = [*pro.auth.items(), *backup_headers(data).items()]
    headers.append((header, dict(headers)[header]))

    response = await client.put(BACKUP, content=data, headers=headers)

    assert (response.status_code, response.json()) == (
        400,
        {"detail": f"{header} was sent more than once; send it once"},
    )
    assert stored.listing() == set()
    assert await rows(app, "SELECT id FROM storage_backups") == []


async def test_a_body_over_backup_max_bytes_is_413_before_it_is_read(
    client: httpx.AsyncClient, pro: Account, stored: StoredBlobs
) -> None:
    data = os.urandom(MAX_BYTES + 1)

    declared = await client.put(BACKUP, content=data, headers={**pro.auth, **backup_headers(data)})
    streamed = await client.put(
        BACKUP, content=chunks(data), headers={**pro.auth, **backup_headers(data)}
    )

    for response in (declared, streamed):
        assert response.status_code == 413
        assert response.json() == {
            "detail": f"Request body is limited to {MAX_BYTES} bytes on this route"
        }
    assert stored.listing() == set()
    assert stored.uploads_in_progress() == []
    assert await history(client, pro) == []


@pytest.mark.parametrize("streamed", [False, True], ids=["content-length", "chunked"])
async def test_a_backup_past_the_quota_is_403_and_nothing_is_kept(
    app: FastAPI, client: httpx.AsyncClient, pro: Account, stored: StoredBlobs, streamed: bool
) -> None:
    five_gib = 5 * 1024**3
    await occupy(app, pro, five_gib - 100_000)
    data = os.urandom(100_001)

    response = await client.put(
        BACKUP,
        content=chunks(data) if streamed else data,
        headers={**pro.auth, **backup_headers(data)},
    )

    assert response.status_code == 403
    # Without Content-Length the server refuses once the body passes the room left,
    # before it knows the whole size.
    needs = "at least 97.7 KiB" if streamed else "97.7 KiB"
    assert response.json()["detail"] == (
        f"Storage quota exceeded: the pro plan allows 5 GiB; 5 GiB is stored and this needs "
        f"{needs} more"
    )
    assert stored.listing() == set()
    assert stored.uploads_in_progress() == []
    assert len(await history(client, pro)) == 1  # the occupied bytes only


async def test_retention_makes_room_for_the_backup_that_replaces_the_oldest(
    app: FastAPI, client: httpx.AsyncClient, pro: Account
) -> None:
    """At BACKUP_KEEP backups, the next one needs room only for what it adds."""
    await occupy(app, pro, 5 * 1024**3 - (KEEP - 1) * 50_000 - 10_000)  # the oldest backup
    kept = [await put_backup(client, pro, os.urandom(50_000)) for _ in range(KEEP - 1)]
    data = os.urandom(20_000)  # 10 kB are left, and 5 GiB go once this lands

    fits = await client.put(BACKUP, content=data, headers={**pro.auth, **backup_headers(data)})

    assert fits.status_code == 200, fits.text
    assert [entry["id"] for entry in await history(client, pro)] == [
        fits.json()["id"],
        *kept[::-1],
    ]
    usage = await client.get("/api/v1/storage/usage", headers=pro.auth)
    assert usage.json()["used_bytes"] == (KEEP - 1) * 50_000 + 20_000


async def test_another_users_backup_is_404(
    app: FastAPI, client: httpx.AsyncClient, pro: Account, stored: StoredBlobs
) -> None:
    backup_id = await put_backup(client, pro, b"mine")
    intruder = await subscriber(app, client, "team")

    fetched = await client.get(BACKUP, params={"id": backup_id}, headers=intruder.auth)
    newest = await client.get(BACKUP, headers=intruder.auth)
    deleted = await client.delete(f"{BACKUP}/{backup_id}", headers=intruder.auth)
    unknown = await client.get(BACKUP, params={"id": str(uuid.uuid4())}, headers=pro.auth)

    assert (fetched.status_code, fetched.json()) == (404, {"detail": "No such backup"})
    assert (newest.status_code, newest.json()) == (404, {"detail": "No backup yet"})
    assert (deleted.status_code, deleted.json()) == (404, {"detail": "No such backup"})
    assert unknown.status_code == 404
    assert await history(client, intruder) == []
    assert [stored.read(key) for key in stored.listing()] == [b"mine"]


async def test_a_free_user_is_refused_with_their_plan_named(
    client: httpx.AsyncClient, stored: StoredBlobs
) -> None:
    free = await register(client)
    data = b"encrypted snapshot"

    response = await client.put(BACKUP, content=data, headers={**free.auth, **backup_headers(data)})

    assert (response.status_code, response.json()) == (
        403,
        {
            "detail": "Your plan (free) does not include cloud storage and backup; "
            "upgrade to pro, power or team to use it"
        },
    )
    assert stored.listing() == set()
