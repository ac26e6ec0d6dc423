"""The orphan sweep: blobs without a row go once old enough; nothing else is touched."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from app.storage.blobs import BlobKind, BlobStore, new_blob_key
from app.storage.scheduled import sweep_orphans
from tests.billing.conftest import Account
from tests.storage.conftest import StoredBlobs, b64, sha256

HOUR = timedelta(hours=1)


async def store_record(client: httpx.AsyncClient, account: Account, data: bytes) -> None:
    body = {"table": "notes", "blob": b64(data), "checksum": sha256(data)}
    response = await client.post("/api/v1/storage/records", json=body, headers=account.auth)
    assert response.status_code == 201, response.text


async def sweep(app: FastAPI, *, at: datetime) -> int:
    return await sweep_orphans(
        sessionmaker=app.state.sessionmaker, blobs=app.state.blob_store, min_age=HOUR, now=at
    )


async def test_blobs_without_a_row_go_after_an_hour_and_nothing_else_does(
    app: FastAPI, client: httpx.AsyncClient, pro: Account, stored: StoredBlobs
) -> None:
    blobs: BlobStore = app.state.blob_store
    await store_record(client, pro, b"has a row")
    (kept,) = stored.listing()
    # What a crash between writing a blob and committing its row leaves behind.
    orphans = [new_blob_key(user_id=pro.user_id, kind=kind) for kind in BlobKind]
    for key in orphans:
        await blobs.put(key, b"orphan")
    # Not a key this server makes: someone else's object in a shared bucket.
    await blobs.put("exports/report.csv", b"not ours")
    now = datetime.now(UTC)

    young = await sweep(app, at=now)  # they were all written just now
    old = await sweep(app, at=now + HOUR + timedelta(minutes=1))

    assert young == 0
    assert old == len(BlobKind)
    assert stored.listing() == {kept, "exports/report.csv"}


class TestScheduled:
    @pytest.fixture
    def storage_settings(self) -> dict[str, Any]:
        return {"storage_sweep_interval_s": 0.2, "storage_orphan_age_s": 0.5}

    async def test_the_lifespan_sweeps_every_interval(
        self, app: FastAPI, stored: StoredBlobs
    ) -> None:
        orphan = new_blob_key(user_id=uuid.uuid4(), kind=BlobKind.BACKUPS)
        await app.state.blob_store.put(orphan, b"left by a crash")
        assert stored.listing() == {orphan}

        async with asyncio.timeout(10):
            while stored.listing():  # noqa: ASYNC110 - the blob store has no event to wait on
                await asyncio.sleep(0.1)
