"""Storage tests: the app on each blob backend, accounts on a plan, and what was stored.

`backend` runs a test twice: on the local disk (`DATA_DIR/blobs`) and on S3,
a real S3-compatible HTTP server on loopback (moto's standalone server, one
per session, a fresh bucket per test). What a test reads back from a backend
it reads without the server's library: files on disk, S3's REST API over HTTP.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
from fastapi import FastAPI
from moto.server import ThreadedMotoServer
from sqlalchemy import text

from app.core.settings import Settings
from app.main import create_app
from tests.billing.conftest import Account, register
from tests.e2e.server_process import free_port

PASSWORD = "a long passphrase"
S3_CREDENTIALS = {"s3_access_key_id": "test", "s3_secret_access_key": "test"}


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


class StoredBlobs:
    """The blobs a backend holds, read the way an operator would, not through the app."""

    def uploads_in_progress(self) -> list[str]:
        return []

    def listing(self) -> set[str]:
        raise NotImplementedError

    def read(self, key: str) -> bytes:
        raise NotImplementedError


class DiskBlobs(StoredBlobs):
    def __init__(self, root: Path) -> None:
        self.root = root

    def listing(self) -> set[str]:
        if not self.root.exists():
            return set()
        return {p.relative_to(self.root).as_posix() for p in self.root.rglob("*") if p.is_file()}

    def read(self, key: str) -> bytes:
        return (self.root / key).read_bytes()


class BucketBlobs(StoredBlobs):
    """A bucket seen through boto3, S3's own client, not the server's library."""

    def __init__(self, endpoint: str, bucket: str) -> None:
        self.bucket = bucket
        self.client = s3_client(endpoint)

    def listing(self) -> set[str]:
        listed = self.client.list_objects_v2(Bucket=self.bucket)
        return {str(item["Key"]) for item in listed.get("Contents", [])}

    def read(self, key: str) -> bytes:
        return bytes(self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read())

    def uploads_in_progress(self) -> list[str]:
        """Multipart uploads begun and neither completed nor aborted."""
        listed = self.client.list_multipart_uploads(Bucket=self.bucket)
        return [str(upload["Key"]) for upload in listed.get("Uploads", [])]


def s3_client(endpoint: str) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )


def create_bucket(endpoint: str) -> str:
    bucket = f"adiuva-{uuid.uuid4().hex[:12]}"
    s3_client(endpoint).create_bucket(Bucket=bucket)
    return bucket


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """moto's S3 server on a loopback port, for the whole session."""
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


class MotoProcess:
    """moto's S3 server as a process of its own, for a test that takes it down."""

    def __init__(self) -> None:
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.process = subprocess.Popen(  # noqa: S603 - moto from our venv, our own arguments
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                httpx.get(f"{self.endpoint}/moto-api/", timeout=1)
                return
            except httpx.TransportError:
                time.sleep(0.1)
        self.kill()
        msg = "moto's server did not start"
        raise RuntimeError(msg)

    def kill(self) -> None:
        self.process.kill()
        self.process.wait()


@pytest.fixture
def moto_process() -> Iterator[MotoProcess]:
    server = MotoProcess()
    try:
        yield server
    finally:
        server.kill()


@pytest.fixture(params=["disk", "s3"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[dict[str, Any], StoredBlobs]:
    """The blob backend's settings and a view of what it stores."""
    if request.param == "disk":
        data_dir = tmp_path / "data"
        return {"data_dir": data_dir}, DiskBlobs(data_dir / "blobs")
    endpoint = request.getfixturevalue("s3_endpoint")
    bucket = create_bucket(endpoint)
    settings = {"s3_bucket": bucket, "s3_endpoint_url": endpoint, **S3_CREDENTIALS}
    return settings, BucketBlobs(endpoint, bucket)


@pytest.fixture
def stored(backend: tuple[dict[str, Any], StoredBlobs]) -> StoredBlobs:
    return backend[1]


@pytest.fixture
def storage_settings() -> dict[str, Any]:
    """Settings a module overrides (BACKUP_KEEP, BACKUP_MAX_BYTES, …)."""
    return {}


@pytest.fixture
def settings(
    make_settings: Callable[..., Settings],
    database_url: str,
    backend: tuple[dict[str, Any], StoredBlobs],
    storage_settings: dict[str, Any],
) -> Settings:
    return make_settings(
        database_url=database_url,
        rate_limit_free=10_000,
        rate_limit_pro=10_000,
        rate_limit_power=10_000,
        **backend[0],
        **storage_settings,
    )


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[FastAPI]:
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        yield application


async def rows(app: FastAPI, statement: str, **params: object) -> list[tuple[Any, ...]]:
    async with app.state.engine.begin() as conn:
        result = await conn.execute(text(statement), params)
        return [tuple(row) for row in result] if result.returns_rows else []


async def set_tier(app: FastAPI, account: Account, tier: str) -> None:
    """Put the account on `tier`, as billing does (the tier lives in the database)."""
    await rows(app, "UPDATE users SET tier = :tier WHERE id = :id", tier=tier, id=account.user_id)


async def subscriber(app: FastAPI, client: httpx.AsyncClient, tier: str = "pro") -> Account:
    account = await register(client)
    await set_tier(app, account, tier)
    return account


async def occupy(app: FastAPI, account: Account, size_bytes: int) -> None:
    """Count `size_bytes` against the account as an earlier backup would, without
    writing them (a row whose blob nothing reads in the test)."""
    await rows(
        app,
        "INSERT INTO storage_backups (id, user_id, version, timestamp_ms, blob_key, checksum,"
        " size_bytes) VALUES (:id, :user_id, '1', 0, :key, :checksum, :size)",
        id=uuid.uuid4(),
        user_id=account.user_id,
        key=f"{account.user_id}/backups/{uuid.uuid4()}",
        checksum="0" * 64,
        size=size_bytes,
    )


@pytest.fixture
async def pro(app: FastAPI, client: httpx.AsyncClient) -> Account:
    return await subscriber(app, client, "pro")
