"""`/storage/records`: encrypted rows stored as opaque blobs, on disk and on S3."""

from __future__ import annotations

import re
import uuid

import httpx
import pytest
from fastapi import FastAPI

from tests.billing.conftest import Account, register
from tests.storage.conftest import StoredBlobs, b64, rows, sha256, subscriber

RECORDS = "/api/v1/storage/records"
KEY = re.compile(r"^([0-9a-f-]{36})/records/([0-9a-f-]{36})$")
FREE_REFUSAL = {
    "detail": "Your plan (free) does not include cloud storage and backup; upgrade to use it"
}


def record_body(data: bytes, *, table: str = "tasks") -> dict[str, str]:
    return {"table": table, "blob": b64(data), "checksum": sha256(data)}


async def create(client: httpx.AsyncClient, account: Account, data: bytes, **extra: str) -> str:
    response = await client.post(RECORDS, json=record_body(data, **extra), headers=account.auth)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def test_a_record_is_stored_as_the_exact_bytes_and_read_back_with_its_checksum(
    client: httpx.AsyncClient, pro: Account, stored: StoredBlobs
) -> None:
    data = bytes(range(256)) * 40  # every byte value, as ciphertext has

    response = await client.post(RECORDS, json=record_body(data), headers=pro.auth)

    assert response.status_code == 201, response.text
    assert set(response.json()) == {"id", "created_at"}
    record_id = response.json()["id"]
    (key,) = stored.listing()
    owner, _blob_id = KEY.fullmatch(key).groups()  # type: ignore[union-attr]
    assert owner == str(pro.user_id)
    assert stored.read(key) == data  # the server stored the bytes it got, nothing else
    read = await client.get(f"{RECORDS}/{record_id}", headers=pro.auth)
    assert read.status_code == 200
    assert read.content == data
    assert read.headers["content-type"] == "application/octet-stream"
    assert read.headers["x-checksum"] == sha256(data)
    assert read.headers["etag"] == f'"{sha256(data)}"'


async def test_the_key_holds_nothing_the_user_wrote(
    client: httpx.AsyncClient, pro: Account, stored: StoredBlobs
) -> None:
    await create(client, pro, b"ciphertext", table="secretProjectNames")

    (key,) = stored.listing()
    assert KEY.fullmatch(key)
    assert "secret" not in key.lower()


async def test_an_unchanged_record_is_not_sent_again(
    client: httpx.AsyncClient, pro: Account
) -> None:
    record_id = await create(client, pro, b"ciphertext")
    etag = f'"{sha256(b"ciphertext")}"'

    same = await client.get(
        f"{RECORDS}/{record_id}", headers={**pro.auth, "If-None-Match": f'W/"x", {etag}'}
    )
    other = await client.get(f"{RECORDS}/{record_id}", headers={**pro.auth, "If-None-Match": '"x"'})

    assert (same.status_code, same.content, same.headers["etag"]) == (304, b"", etag)
    assert (other.status_code, other.content) == (200, b"ciphertext")


async def test_the_list_is_metadata_only_filtered_by_table_and_paged(
    client: httpx.AsyncClient, pro: Account
) -> None:
    ids = [await create(client, pro, f"task {n}".encode()) for n in range(3)]
    note = await create(client, pro, b"note", table="notes")

    everything = await client.get(RECORDS, headers=pro.auth)
    tasks = await client.get(RECORDS, params={"table": "tasks"}, headers=pro.auth)
    second_page = await client.get(
        RECORDS, params={"table": "tasks", "page": 2, "limit": 2}, headers=pro.auth
    )

    assert everything.status_code == 200
    assert [r["id"] for r in everything.json()] == [*ids, note]
    first = everything.json()[0]
    assert set(first) == {"id", "table", "checksum", "size_bytes", "created_at", "updated_at"}
    assert (first["table"], first["checksum"], first["size_bytes"]) == (
        "tasks",
        sha256(b"task 0"),
        6,
    )
    assert [r["id"] for r in tasks.json()] == ids
    assert [r["id"] for r in second_page.json()] == ids[2:]


async def test_put_replaces_the_bytes_and_removes_the_old_blob(
    client: httpx.AsyncClient, pro: Account, stored: StoredBlobs
) -> None:
    record_id = await create(client, pro, b"first version")
    (old_key,) = stored.listing()

    replaced = await client.put(
        f"{RECORDS}/{record_id}",
        json={
            "blob": b64(b"second, longer version"),
            "checksum": sha256(b"second, longer version"),
        },
        headers=pro.auth,
    )

    assert replaced.status_code == 200, replaced.text
    body = replaced.json()
    assert (body["id"], body["checksum"], body["size_bytes"]) == (
        record_id,
        sha256(b"second, longer version"),
        22,
    )
    assert body["updated_at"] > body["created_at"]
    (new_key,) = stored.listing()
    assert new_key != old_key
    assert stored.read(new_key) == b"second, longer version"
    read = await client.get(f"{RECORDS}/{record_id}", headers=pro.auth)
    assert read.content == b"second, longer version"


async def test_delete_removes_the_row_and_the_blob(
    app: FastAPI, client: httpx.AsyncClient, pro: Account, stored: StoredBlobs
) -> None:
    record_id = await create(client, pro, b"ciphertext")

    deleted = await client.delete(f"{RECORDS}/{record_id}", headers=pro.auth)

    assert (deleted.status_code, deleted.json()) == (200, {"ok": True})
    assert stored.listing() == set()
    assert await rows(app, "SELECT id FROM storage_records") == []
    again = await client.delete(f"{RECORDS}/{record_id}", headers=pro.auth)
    assert (again.status_code, again.json()) == (404, {"detail": "No such record"})


async def test_a_checksum_mismatch_is_400_and_stores_nothing(
    app: FastAPI, client: httpx.AsyncClient, pro: Account, stored: StoredBlobs
) -> None:
    record_id = await create(client, pro, b"original")
    wrong = {"blob": b64(b"tampered"), "checksum": sha256(b"original")}

    created = await client.post(RECORDS, json={"table": "tasks", **wrong}, headers=pro.auth)
    replaced = await client.put(f"{RECORDS}/{record_id}", json=wrong, headers=pro.auth)

    for response in (created, replaced):
        assert response.status_code == 400
        assert response.json() == {
            "detail": "Checksum mismatch: the SHA-256 of the bytes received is not the "
            "checksum sent"
        }
    (key,) = stored.listing()
    assert stored.read(key) == b"original"
    assert await rows(app, "SELECT checksum FROM storage_records") == [(sha256(b"original"),)]


@pytest.mark.parametrize(
    ("body", "where"),
    [
        ({"table": "tasks", "blob": "not base64!", "checksum": "0" * 64}, ["body", "blob"]),
        ({"table": "tasks", "blob": "QUJD", "checksum": "xyz"}, ["body", "checksum"]),
        ({"table": "tasks", "blob": "", "checksum": "0" * 64}, ["body", "blob"]),
        ({"table": "tasks", "blob": 12, "checksum": "0" * 64}, ["body", "blob"]),
        ({"table": "a table; drop", "blob": "QUJD", "checksum": "0" * 64}, ["body", "table"]),
        ({"blob": "QUJD", "checksum": "0" * 64}, ["body", "table"]),
    ],
    ids=["invalid-base64", "bad-checksum", "empty-blob", "number", "bad-table", "no-table"],
)
async def test_malformed_records_are_422_and_store_nothing(
    client: httpx.AsyncClient,
    pro: Account,
    stored: StoredBlobs,
    body: dict[str, object],
    where: list[str],
) -> None:
    response = await client.post(RECORDS, json=body, headers=pro.auth)

    assert response.status_code == 422
    assert [error["loc"] for error in response.json()["detail"]] == [where]
    assert stored.listing() == set()


async def test_invalid_json_is_refused(
    client: httpx.AsyncClient, pro: Account, stored: StoredBlobs
) -> None:
    response = await client.post(
        RECORDS,
        content=b'{"table": "tasks", "blob": ',
        headers={**pro.auth, "Content-Type": "application/json"},
    )

    assert response.status_code == 422
    assert response.json()["detail"][0]["type"] == "json_invalid"
    assert stored.listing() == set()


async def test_another_users_record_is_404_to_read_replace_and_delete(
    app: FastAPI, client: httpx.AsyncClient, pro: Account, stored: StoredBlobs
) -> None:
    record_id = await create(client, pro, b"mine")
    intruder = await subscriber(app, client, "power")
    replacement = {"blob": b64(b"theirs"), "checksum": sha256(b"theirs")}

    answers = [
        await client.get(f"{RECORDS}/{record_id}", headers=intruder.auth),
        await client.put(f"{RECORDS}/{record_id}", json=replacement, headers=intruder.auth),
        await client.delete(f"{RECORDS}/{record_id}", headers=intruder.auth),
        await client.get(f"{RECORDS}/{uuid.uuid4()}", headers=pro.auth),
    ]

    assert [(a.status_code, a.json()) for a in answers] == [(404, {"detail": "No such record"})] * 4
    assert (await client.get(RECORDS, headers=intruder.auth)).json() == []
    (key,) = stored.listing()
    assert stored.read(key) == b"mine"


async def test_a_free_user_is_refused_writes_with_their_plan_named(
    client: httpx.AsyncClient, stored: StoredBlobs
) -> None:
    free = await register(client)

    created = await client.post(RECORDS, json=record_body(b"x"), headers=free.auth)
    listed = await client.get(RECORDS, headers=free.auth)

    assert (created.status_code, created.json()) == (403, FREE_REFUSAL)
    assert (listed.status_code, listed.json()) == (200, [])
    assert stored.listing() == set()


async def test_records_need_a_signed_in_user(client: httpx.AsyncClient) -> None:
    response = await client.post(RECORDS, json=record_body(b"x"))

    assert response.status_code == 401
