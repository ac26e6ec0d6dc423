"""Cloud storage through the real server: a 256 MiB backup in and out, and vector search.

    .venv/bin/python -m benchmarks.storage [--mib 256] [--items 10000] [--dim 768] [--dir DIR]

The server runs as `python -m app serve` (embedded PostgreSQL, blobs on the
local disk under a temporary DATA_DIR) in its own process; this process is the
desktop. Timed, beside a plain file copy of the same file in the same run (the
floor: `shutil.copyfile`, on the same disk):

- upload: `PUT /backup` of the file, streamed from disk (SHA-256 checked by
  the server while it streams);
- download: `GET /backup`, streamed to a file on disk.

Target: each at least half the copy's speed. Two more floors are printed beside
it: the same copy through user space (read and write 1 MiB at a time), which
is what any process that must see the bytes (to hash them) can do at best; and
the kernel's copy followed by an fsync, which is what an upload does (the
server acknowledges a backup only once it is on the disk).
Each timed phase writes a new file, after the disk has written everything back
and rested (`settle`), so no phase pays for another's writes.

Then `--items` vector items with `--dim`-dimensional shared vectors for the
user (and a tenth as many for each of nine other users), and
`POST /storage/vectors/search` (top 10, blobs included) timed over HTTP.

Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from app.core import migrations
from app.core.embedded_db import EmbeddedPostgres

PROJECT_ROOT = Path(__file__).resolve().parents[1]
MIB = 1024 * 1024
PASSWORD = "a long passphrase"  # noqa: S105 - benchmark accounts on a throwaway database
BATCH = 250  # vector items per upsert
# The client of the backup figures: curl when installed (httpx's own speed is below the
# server's), httpx otherwise.
CURL = shutil.which("curl")
DISK_REST_S = 3.0  # a rest after which this machine's disk often takes fast writes again


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def server(data_dir: Path, database_url: str) -> Iterator[str]:
    """`python -m app serve` on a loopback port, its blobs under `data_dir`."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in {"ENV"}}
    env.update(
        DATABASE_URL=database_url,
        HOST="127.0.0.1",
        PORT=str(port),
        DATA_DIR=str(data_dir),
        LOG_LEVEL="WARNING",
        BACKUP_MAX_BYTES=str(4 * 1024**3),
        RATE_LIMIT_PRO="100000",
    )
    log = (data_dir.parent / "server.log").open("wb")
    child = subprocess.Popen(
        [sys.executable, "-m", "app", "serve"], cwd=PROJECT_ROOT, env=env, stdout=log, stderr=log
    )
    base_url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{base_url}/api/v1/health/ready", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if child.poll() is not None:
                raise RuntimeError("the server exited; see " + log.name)
            time.sleep(0.2)
        yield base_url
    finally:
        child.send_signal(signal.SIGTERM)
        child.wait(timeout=30)
        log.close()


async def pro_user(http: httpx.AsyncClient, database_url: str) -> dict[str, str]:
    """Register a user and put them on the pro plan (as billing would); their auth header."""
    email = f"{uuid.uuid4().hex[:8]}@example.com"
    response = await http.post("/api/v1/auth/register", json={"email": email, "password": PASSWORD})
    response.raise_for_status()
    engine = create_async_engine(database_url)
    async with engine.begin() as conn:
        await conn.execute(text("UPDATE users SET tier = 'pro' WHERE email = :e"), {"e": email})
    await engine.dispose()
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


async def curl(http: httpx.AsyncClient, *args: str, headers: dict[str, str], path: str) -> float:
    """Run curl (the desktop's side at C speed, so the figure is the server's); seconds."""
    assert CURL is not None
    header_args = [arg for name, value in headers.items() for arg in ("-H", f"{name}: {value}")]
    started = time.perf_counter()
    process = await asyncio.create_subprocess_exec(
        CURL, "--fail", "--silent", "--show-error", *header_args, *args, f"{http.base_url}{path}",
        stdout=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    if await process.wait() != 0:
        msg = f"curl {path} failed"
        raise RuntimeError(msg)
    return time.perf_counter() - started


async def file_chunks(path: Path, size: int = MIB) -> AsyncIterator[bytes]:
    with path.open("rb") as file:
        while chunk := await asyncio.to_thread(file.read, size):
            yield chunk


def copy_durably(source: Path, target: Path) -> None:
    """The kernel's copy, then on the disk before it returns (as a stored upload is)."""
    shutil.copyfile(source, target)
    with target.open("rb") as copied:
        os.fsync(copied.fileno())


def copy_through_user_space(source: Path, target: Path) -> None:
    """A copy that, like the server, sees every byte (shutil.copyfile lets the kernel
    copy, copy_file_range, without the bytes ever reaching the process)."""
    with source.open("rb") as reading, target.open("wb") as writing:
        while chunk := reading.read(MIB):
            writing.write(chunk)


async def settle(work: Path) -> None:
    """Remove the previous round's copies, write every dirty page back, and let the disk rest.

    Untimed. This machine's disk sometimes takes 256 MiB at several GiB/s and
    sometimes at about 265 MiB/s (`dd` took 0.1 s or 1 s, whatever wrote it, `cp`
    included; a rest often, not always, brought the fast writes back): without
    a rest, whichever phase came first got the fast disk and the others were
    timed on the slow one. Each round's transfers are therefore also set against
    that round's own copy.
    """

    def write_back() -> None:
        for old in work.glob("*copy-*.bin"):
            old.unlink()
        os.sync()

    await asyncio.to_thread(write_back)
    await asyncio.sleep(DISK_REST_S)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while chunk := file.read(MIB):
            digest.update(chunk)
    return digest.hexdigest()


async def upload_and_download(
    http: httpx.AsyncClient,
    auth: dict[str, str],
    source: Path,
    restored: Path,
    *,
    checksum: str,
    size: int,
    work: Path,
) -> tuple[float, float]:
    """One backup of `source` through the server and back into `restored`; seconds each."""
    headers = {
        **auth,
        "X-Backup-Version": "1",
        "X-Backup-Timestamp": str(int(time.time() * 1000)),
        "X-Backup-Checksum": checksum,
        "Content-Length": str(size),
    }
    if CURL is not None:
        upload_s = await curl(http, "-T", str(source), headers=headers, path="/api/v1/backup")
        await settle(work)
        download_s = await curl(http, "-o", str(restored), headers=auth, path="/api/v1/backup")
        return upload_s, download_s
    started = time.perf_counter()
    response = await http.put("/api/v1/backup", content=file_chunks(source), headers=headers)
    upload_s = time.perf_counter() - started
    response.raise_for_status()
    await settle(work)
    started = time.perf_counter()
    async with http.stream("GET", "/api/v1/backup", headers=auth) as download:
        download.raise_for_status()
        with restored.open("wb") as file:
            async for chunk in download.aiter_raw(MIB):
                file.write(chunk)
    return upload_s, time.perf_counter() - started


async def backups(
    http: httpx.AsyncClient, auth: dict[str, str], work: Path, *, mib: int, rounds: int
) -> None:
    source = work / "backup.bin"
    with source.open("wb") as file:
        for _ in range(mib):
            file.write(os.urandom(MIB))
    checksum = sha256_of(source)
    copies: list[float] = []
    durable_copies: list[float] = []
    user_copies: list[float] = []
    uploads: list[float] = []
    downloads: list[float] = []
    # Rounds of copies, upload, download. Every timed phase writes a new file and
    # starts with nothing left to write back (`settle`): otherwise the one after a
    # copy pays for the copy's write-back, and overwriting a file first frees its
    # blocks (discarded on this machine's disk, mounted with `discard`).
    for n in range(rounds):
        restored = work / f"restored-{n}.bin"
        floors = (
            (copies, shutil.copyfile, "copy"),
            (durable_copies, copy_durably, "durable-copy"),
            (user_copies, copy_through_user_space, "user-copy"),
        )
        for times, copy, name in floors:
            await settle(work)
            started = time.perf_counter()
            await asyncio.to_thread(copy, source, work / f"{name}-{n}.bin")
            times.append(time.perf_counter() - started)
        await settle(work)
        upload_s, download_s = await upload_and_download(
            http, auth, source, restored, checksum=checksum, size=mib * MIB, work=work
        )
        uploads.append(upload_s)
        downloads.append(download_s)
        assert sha256_of(restored) == checksum, "the backup came back different"
    copy_s, durable_copy_s, user_copy_s, upload_s, download_s = (
        statistics.median(t) for t in (copies, durable_copies, user_copies, uploads, downloads)
    )

    def rate(seconds: float) -> str:
        return f"{mib / seconds:8.0f} MiB/s  ({seconds:5.2f} s)"

    client = "curl" if CURL is not None else "httpx"
    print(
        f"a {mib} MiB backup on the filesystem backend, through the server over loopback "
        f"(client: {client}; median of {rounds} rounds)"
    )

    def versus(seconds: float) -> str:
        kernel, durable, user = (floor / seconds for floor in (copy_s, durable_copy_s, user_copy_s))
        return f"{kernel:4.0%} of the copy, {durable:4.0%} with fsync, {user:4.0%} in user space"

    print(f"  file copy in the kernel (shutil.copyfile) : {rate(copy_s)}")
    print(f"  the same, then fsync                      : {rate(durable_copy_s)}")
    print(f"  file copy through user space (1 MiB r/w)  : {rate(user_copy_s)}")
    print(f"  upload   PUT /backup                      : {rate(upload_s)}   {versus(upload_s)}")
    print(
        f"  download GET /backup                      : {rate(download_s)}   {versus(download_s)}"
    )

    # The disk's state drifts from round to round (see `settle`), so each round's
    # transfers are also set against that round's copy.
    def per_round(transfers: list[float]) -> str:
        ratios = [copy / transfer for copy, transfer in zip(copies, transfers, strict=True)]
        return " ".join(f"{ratio:.0%}" for ratio in ratios) + (
            f"  (median {statistics.median(ratios):.0%})"
        )

    print(f"  each round against its own copy: upload {per_round(uploads)}")
    print(f"                                   download {per_round(downloads)}")
    print("  (target: each at least 50% of the copy)")


def unit_vector(rng: random.Random, dim: int) -> list[float]:
    raw = [rng.gauss(0, 1) for _ in range(dim)]
    norm = sum(x * x for x in raw) ** 0.5
    return [round(x / norm, 6) for x in raw]


async def seed_vectors(
    http: httpx.AsyncClient, auth: dict[str, str], *, items: int, dim: int, rng: random.Random
) -> None:
    for start in range(0, items, BATCH):
        batch = []
        for n in range(start, min(items, start + BATCH)):
            blob = os.urandom(256)
            batch.append(
                {
                    "id": f"item-{n}",
                    "blob": base64.b64encode(blob).decode(),
                    "checksum": hashlib.sha256(blob).hexdigest(),
                    "vector": unit_vector(rng, dim),
                }
            )
        response = await http.post(
            "/api/v1/storage/vectors/upsert", json={"vectors": batch}, headers=auth
        )
        response.raise_for_status()


async def vector_search(
    http: httpx.AsyncClient, database_url: str, *, items: int, dim: int, runs: int
) -> None:
    rng = random.Random(7)
    measured = await pro_user(http, database_url)
    started = time.perf_counter()
    await seed_vectors(http, measured, items=items, dim=dim, rng=rng)
    for _ in range(9):
        other = await pro_user(http, database_url)
        await seed_vectors(http, other, items=items // 10, dim=dim, rng=rng)
    seeded_s = time.perf_counter() - started

    samples = []
    for n in range(runs + 5):
        query: dict[str, Any] = {"query_vector": unit_vector(rng, dim), "top_k": 10}
        started = time.perf_counter_ns()
        response = await http.post("/api/v1/storage/vectors/search", json=query, headers=measured)
        elapsed = time.perf_counter_ns() - started
        response.raise_for_status()
        assert len(response.json()["results"]) == 10
        if n >= 5:  # the first ones warm the caches
            samples.append(elapsed)
    ordered = sorted(samples)
    p50 = statistics.median(ordered) / 1e6
    p95 = ordered[int(len(ordered) * 0.95) - 1] / 1e6
    print(
        f"vector search: {items} items of {dim} dimensions for the user, "
        f"{items + 9 * (items // 10)} in all (seeded in {seeded_s:.0f} s)"
    )
    print(
        f"  POST /storage/vectors/search, top 10 with blobs: p50 {p50:6.2f} ms  p95 {p95:6.2f} ms"
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mib", type=int, default=256)
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--dim", type=int, default=768)
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--dir",
        type=Path,
        default=None,
        help="where the server's data, the database and the copies live "
        "(default: the system's temporary directory; /dev/shm takes the disk out)",
    )
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        work = Path(tmp)
        data_dir = work / "var"
        data_dir.mkdir()
        database = EmbeddedPostgres(work)
        await asyncio.to_thread(database.start)
        try:
            database_url = database.database_url
            await asyncio.to_thread(migrations.upgrade, database_url)
            with server(data_dir, database_url) as base_url:
                async with httpx.AsyncClient(base_url=base_url, timeout=600) as http:
                    auth = await pro_user(http, database_url)
                    await backups(http, auth, work, mib=args.mib, rounds=args.rounds)
                    await vector_search(
                        http, database_url, items=args.items, dim=args.dim, runs=args.runs
                    )
        finally:
            await asyncio.to_thread(database.stop)


if __name__ == "__main__":
    asyncio.run(main())
