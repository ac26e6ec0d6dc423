"""Reads and writes of one user's storage that meet: a delete, a replace or a prune
landing while another request is halfway through the same item.

Each race is staged at its worst moment, not hoped for in a flood: the test
steps in at the point where the other request would land (before a blob is
read, after it was opened, before a replace updates its row).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable

import httpx
import pytest
from fastapi import FastAPI

from app.storage import writes
from app.storage.blobs import READ_RANGE_BYTES, BlobKind, BlobStore, new_blob_key
from app.storage.exceptions import BlobNotFoundError
from tests.billing.conftest import Account
from tests.storage.conftest import StoredBlobs, b64, rows, sha256

RECORDS = "/api/v1/storage/records"
# Long enough that a DELETE which does not wait for the replace's turn has landed.
DELETE_LANDS_WITHIN_S = 2.0


def _store(app: FastAPI) -> BlobStore:
    store: BlobStore = app.state.blob_store
    return store


async def _create(client: httpx.AsyncClient, account: Account, data: bytes) -> str:
    response = await client.post(
        RECORDS,
        json={"table": "tasks", "blob": b64(data), "checksum": sha256(data)},
        headers=account.auth,
    )
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def _replace(
    client: httpx.AsyncClient, account: Account, record_id: str, data: bytes
) -> Awaitable[httpx.Response]:
    return client.put(
        f"{RECORDS}/{record_id}",
        json={"blob": b64(data), "checksum": sha256(data)},
        headers=account.auth,
    )


class Staged:
    """A request sent when the blob store is first asked to read; every read (several
    may start at once) waits until it has landed."""

    def __init__(
        self,
        monkeypatch: pytest.MonkeyPatch,
        app: FastAPI,
        request: Callable[[], Awaitable[httpx.Response]],
    ) -> None:
        self._request = request
        self._sent: asyncio.Task[httpx.Response] | None = None
        store = _store(app)
        read = store.read

        async def read_after_it_landed(key: str) -> bytes:
            await self._landed()
            return await read(key)

        monkeypatch.setattr(store, "read", read_after_it_landed)

    def _landed(self) -> asyncio.Task[httpx.Response]:
        if self._sent is None:
            self._sent = asyncio.ensure_future(self._request())
        return self._sent

    async def answer(self) -> httpx.Response:
        assert self._sent is not None, "no blob was read, so the race was never staged"
        return await self._sent


async def test_a_blob_deleted_after_it_was_opened_is_still_read_whole(app: FastAPI) -> None:
    # A backup pruned or deleted while it downloads: on both backends the download
    # that had begun gets every byte (the disk reads it in several ranges).
    store = _store(app)
    data = bytes(range(256)) * ((2 * READ_RANGE_BYTES + 1000) // 256)
    key = new_blob_key(user_id=uuid.uuid4(), kind=BlobKind.BACKUPS)
    await store.put(key, data)

    reader = await store.open(key)
    chunks = aiter(reader)
    first = await anext(chunks)
    await store.delete([key])
    rest = [chunk async for chunk in chunks]

    assert reader.size == len(data)
    assert first + b"".join(rest) == data


async def test_a_blob_gone_before_it_is_opened_is_not_found_not_unavailable(
    app: FastAPI,
) -> None:
    store = _store(app)
    key = new_blob_key(user_id=uuid.uuid4(), kind=BlobKind.RECORDS)
    await store.put(key, b"soon gone")
    await store.delete([key])

    with pytest.raises(BlobNotFoundError):
        await store.read(key)


async def test_a_record_replaced_while_it_is_read_comes_back_as_its_new_version(
    app: FastAPI,
    client: httpx.AsyncClient,
    pro: Account,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The GET has read the row; the replace lands and removes the blob it names.
    record_id = await _create(client, pro, b"first version")
    replace = Staged(monkeypatch, app, lambda: _replace(client, pro, record_id, b"second version"))

    response = await client.get(f"{RECORDS}/{record_id}", headers=pro.auth)

    replaced = await replace.answer()
    assert replaced.status_code == 200, replaced.text
    assert response.status_code == 200, response.text
    assert response.content == b"second version"
    assert response.headers["x-checksum"] == sha256(b"second version")
    assert response.headers["etag"] == f'"{sha256(b"second version")}"'


async def test_a_record_deleted_while_it_is_read_is_404(
    app: FastAPI,
    client: httpx.AsyncClient,
    pro: Account,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    record_id = await _create(client, pro, b"soon deleted")
    delete = Staged(
        monkeypatch, app, lambda: client.delete(f"{RECORDS}/{record_id}", headers=pro.auth)
    )

    response = await client.get(f"{RECORDS}/{record_id}", headers=pro.auth)

    assert (await delete.answer()).status_code == 200
    assert (response.status_code, response.json()) == (404, {"detail": "No such record"})


async def test_a_delete_waits_for_a_replace_that_has_its_turn(
    app: FastAPI,
    client: httpx.AsyncClient,
    pro: Account,
    stored: StoredBlobs,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The replace has read the row under the user's turn and is about to update it
    # when the DELETE arrives: the DELETE waits for the turn, then deletes the new
    # version. Neither request fails and nothing is left behind.
    record_id = await _create(client, pro, b"first version")
    check_room = writes.Turn.check_room
    deletes: list[asyncio.Task[httpx.Response]] = []

    async def delete_arrives(turn: writes.Turn) -> None:
        deleting = asyncio.ensure_future(client.delete(f"{RECORDS}/{record_id}", headers=pro.auth))
        deletes.append(deleting)
        await asyncio.wait([deleting], timeout=DELETE_LANDS_WITHIN_S)
        await check_room(turn)

    monkeypatch.setattr(writes.Turn, "check_room", delete_arrives)
    replaced = await _replace(client, pro, record_id, b"second version")
    monkeypatch.setattr(writes.Turn, "check_room", check_room)
    deleted = await deletes[0]

    assert replaced.status_code == 200, replaced.text
    assert deleted.status_code == 200, deleted.text
    assert await rows(app, "SELECT id FROM storage_records") == []
    assert stored.listing() == set()


async def test_search_leaves_out_an_item_deleted_while_it_was_read(
    app: FastAPI,
    client: httpx.AsyncClient,
    pro: Account,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    items = [
        {"id": name, "blob": b64(name.encode()), "checksum": sha256(name.encode()), "vector": v}
        for name, v in (("kept", [1.0, 0.0]), ("gone", [1.0, 0.1]))
    ]
    upserted = await client.post(
        "/api/v1/storage/vectors/upsert", json={"vectors": items}, headers=pro.auth
    )
    assert upserted.status_code == 200, upserted.text
    # The search has its rows; the items' blobs are read at once, after the delete.
    delete = Staged(
        monkeypatch,
        app,
        lambda: client.request(
            "DELETE", "/api/v1/storage/vectors", json={"ids": ["gone"]}, headers=pro.auth
        ),
    )

    response = await client.post(
        "/api/v1/storage/vectors/search", json={"query_vector": [1.0, 0.0]}, headers=pro.auth
    )

    deleted = await delete.answer()
    assert deleted.status_code == 200, deleted.text
    assert response.status_code == 200, response.text
    assert [hit["id"] for hit in response.json()["results"]] == ["kept"]
