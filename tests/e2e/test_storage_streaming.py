"""Large backups through the real server process: streamed, never held in its memory.

The server runs as `python -m app serve` (its own process, so its memory is its
own) on the test's database; the test samples the process's resident memory
while a 200 MiB backup goes in and comes back, and drops a connection in the
middle of an upload to see that nothing is kept.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import psutil
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from tests.e2e.server_process import ServerProcess

MIB = 1024 * 1024
BODY_MIB = 200
# What the server may grow by while a 200 MiB body streams through it: a few upload parts
# and download chunks, far below the body itself.
MAX_GROWTH = 64 * MIB
PASSWORD = "a long passphrase"


class Backup:
    """A large body made on the fly: `size_mib` blocks of a random MiB, each numbered."""

    def __init__(self, size_mib: int) -> None:
        self.block = os.urandom(MIB)
        self.size_mib = size_mib
        digest = hashlib.sha256()
        for chunk in self.chunks():
            digest.update(chunk)
        self.checksum = digest.hexdigest()

    def chunks(self) -> Iterator[bytes]:
        for n in range(self.size_mib):
            yield n.to_bytes(8, "big") + self.block[8:]

    async def stream(self) -> AsyncIterator[bytes]:
        for chunk in self.chunks():
            yield chunk

    @property
    def size(self) -> int:
        return self.size_mib * MIB

    def headers(self, token: str) -> dict[str, str]:
        return {
            "Authorization": f"Bearer {token}",
            "X-Backup-Version": "1",
            "X-Backup-Timestamp": "1763000000000",
            "X-Backup-Checksum": self.checksum,
            "Content-Length": str(self.size),
        }


class PeakMemory:
    """The highest resident memory of a process, sampled every few milliseconds."""

    def __init__(self, pid: int) -> None:
        self.process = psutil.Process(pid)
        self.baseline = self.peak = 0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._done.wait(0.005):
            self.peak = max(self.peak, self.process.memory_info().rss)

    @property
    def growth(self) -> int:
        return self.peak - self.baseline

    def __enter__(self) -> PeakMemory:
        self.baseline = self.peak = self.process.memory_info().rss
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join()


@pytest.fixture
def server(tmp_path: Path, database_url: str) -> Iterator[ServerProcess]:
    process = ServerProcess(data_dir=tmp_path / "var", env={"DATABASE_URL": database_url})
    process.start()
    try:
        yield process
    finally:
        process.stop()


async def pro_account(server: ServerProcess, database_url: str) -> str:
    """A registered user on the pro plan; their access token."""
    email = f"{uuid.uuid4().hex[:8]}@example.com"
    async with httpx.AsyncClient(base_url=server.base_url) as http:
        response = await http.post(
            "/api/v1/auth/register", json={"email": email, "password": PASSWORD}
        )
    assert response.status_code == 201, response.text
    engine = create_async_engine(database_url)
    try:
        async with engine.begin() as conn:
            await conn.execute(text("UPDATE users SET tier = 'pro' WHERE email = :e"), {"e": email})
    finally:
        await engine.dispose()
    return str(response.json()["access_token"])


def blob_files(server: ServerProcess) -> list[Path]:
    root = server.data_dir / "blobs"
    return [path for path in root.rglob("*") if path.is_file()] if root.exists() else []


async def test_a_200_mib_backup_streams_in_and_out_in_bounded_server_memory(
    server: ServerProcess, database_url: str
) -> None:
    assert server.process is not None
    token = await pro_account(server, database_url)
    warm_up = Backup(1)
    big = Backup(BODY_MIB)
    async with httpx.AsyncClient(base_url=server.base_url, timeout=120) as http:
        # The first upload loads what every later one uses (the blob store's threads).
        first = await http.put(
            "/api/v1/backup", content=warm_up.stream(), headers=warm_up.headers(token)
        )
        assert first.status_code == 200, first.text

        with PeakMemory(server.process.pid) as upload:
            stored = await http.put(
                "/api/v1/backup", content=big.stream(), headers=big.headers(token)
            )
        assert stored.status_code == 200, stored.text

        digest, received = hashlib.sha256(), 0
        with PeakMemory(server.process.pid) as download:
            async with http.stream(
                "GET", "/api/v1/backup", headers={"Authorization": f"Bearer {token}"}
            ) as response:
                assert response.status_code == 200
                async for chunk in response.aiter_raw():
                    digest.update(chunk)
                    received += len(chunk)

    assert (received, digest.hexdigest()) == (big.size, big.checksum)
    assert response.headers["x-backup-checksum"] == big.checksum
    assert upload.growth < MAX_GROWTH, f"upload: the server grew by {upload.growth // MIB} MiB"
    assert download.growth < MAX_GROWTH, (
        f"download: the server grew by {download.growth // MIB} MiB"
    )
    sizes = sorted(path.stat().st_size for path in blob_files(server))
    assert sizes == [MIB, big.size]
    assert server.stop() == 0, server.log()  # and it shuts down cleanly after all that


async def test_a_client_that_leaves_mid_upload_leaves_nothing_behind(
    server: ServerProcess, database_url: str
) -> None:
    token = await pro_account(server, database_url)
    big = Backup(64)
    _, writer = await asyncio.open_connection("127.0.0.1", server.port)
    head = "".join(f"{name}: {value}\r\n" for name, value in big.headers(token).items())
    writer.write(f"PUT /api/v1/backup HTTP/1.1\r\nHost: 127.0.0.1\r\n{head}\r\n".encode())
    for chunk, _ in zip(big.chunks(), range(24), strict=False):  # 24 of 64 MiB, then gone
        writer.write(chunk)
        await writer.drain()
    writer.close()
    await writer.wait_closed()

    async with httpx.AsyncClient(base_url=server.base_url) as http:
        auth = {"Authorization": f"Bearer {token}"}
        async with asyncio.timeout(10):
            while blob_files(server):  # noqa: ASYNC110 - the disk has no event to wait on
                await asyncio.sleep(0.05)
        history = await http.get("/api/v1/backup/history", headers=auth)
        usage = await http.get("/api/v1/storage/usage", headers=auth)

    assert history.json() == []
    assert usage.json()["used_bytes"] == 0
    assert "unhandled error" not in server.log()
