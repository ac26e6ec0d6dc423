"""S3 going away: a clear 503 with Retry-After, and nothing half-stored.

moto's S3 server runs as a process of its own here, so the test can kill it,
before a request or in the middle of a streamed upload.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Callable

import httpx
import pytest
from fastapi import FastAPI

from app.core.settings import Settings
from tests.billing.conftest import Account
from tests.storage.conftest import S3_CREDENTIALS, MotoProcess, b64, create_bucket, rows, sha256

UNAVAILABLE_WRITE = {"detail": "Storage is unavailable; nothing was stored, try again shortly"}
UNAVAILABLE_READ = {"detail": "Storage is unavailable; try again shortly"}
MIB = 1024 * 1024


@pytest.fixture
def settings(
    make_settings: Callable[..., Settings], database_url: str, moto_process: MotoProcess
) -> Settings:
    return make_settings(
        database_url=database_url,
        s3_bucket=create_bucket(moto_process.endpoint),
        s3_endpoint_url=moto_process.endpoint,
        **S3_CREDENTIALS,
    )


def backup_headers(account: Account, data: bytes) -> dict[str, str]:
    return {
        **account.auth,
        "X-Backup-Version": "1",
        "X-Backup-Timestamp": "1763000000000",
        "X-Backup-Checksum": sha256(data),
    }


async def nothing_stored(app: FastAPI, client: httpx.AsyncClient, account: Account) -> None:
    for table in ("storage_records", "storage_vectors", "storage_backups"):
        assert await rows(app, f"SELECT id FROM {table}") == []  # noqa: S608 - our table names
    usage = await client.get("/api/v1/storage/usage", headers=account.auth)
    assert usage.json()["used_bytes"] == 0


async def test_writes_and_reads_while_s3_is_down_are_503_with_retry_after(
    app: FastAPI, client: httpx.AsyncClient, pro: Account, moto_process: MotoProcess
) -> None:
    moto_process.kill()
    data = b"encrypted"
    started = time.monotonic()

    record = await client.post(
        "/api/v1/storage/records",
        json={"table": "notes", "blob": b64(data), "checksum": sha256(data)},
        headers=pro.auth,
    )
    backup = await client.put("/api/v1/backup", content=data, headers=backup_headers(pro, data))

    assert time.monotonic() - started < 20  # a few quick retries, not minutes
    for response in (record, backup):
        assert (response.status_code, response.json()) == (503, UNAVAILABLE_WRITE)
        assert response.headers["retry-after"] == "5"
    await nothing_stored(app, client, pro)


async def test_a_backup_read_while_s3_is_down_is_503(
    app: FastAPI, client: httpx.AsyncClient, pro: Account, moto_process: MotoProcess
) -> None:
    data = b"encrypted snapshot"
    stored = await client.put("/api/v1/backup", content=data, headers=backup_headers(pro, data))
    assert stored.status_code == 200, stored.text
    moto_process.kill()

    response = await client.get("/api/v1/backup", headers=pro.auth)

    assert (response.status_code, response.json()) == (503, UNAVAILABLE_READ)


async def test_s3_dying_in_the_middle_of_a_backup_upload_keeps_nothing(
    app: FastAPI, client: httpx.AsyncClient, pro: Account, moto_process: MotoProcess
) -> None:
    data = os.urandom(48 * MIB)
    sent = 0

    async def body() -> AsyncIterator[bytes]:
        nonlocal sent
        for start in range(0, len(data), MIB):
            if start == 20 * MIB:  # two parts are up; S3 dies under the third
                await asyncio.to_thread(moto_process.kill)
            sent += MIB
            yield data[start : start + MIB]

    response = await client.put("/api/v1/backup", content=body(), headers=backup_headers(pro, data))

    assert (response.status_code, response.json()) == (503, UNAVAILABLE_WRITE)
    assert sent < len(data)  # refused as soon as S3 failed, not after the whole body
    await nothing_stored(app, client, pro)
