"""Closing the blob store: calls still in flight finish first, and the process exits cleanly.

obstore's runtime threads outlive each call by a few milliseconds; a process
that finalises inside that window aborts (exit 134). `BlobStore.aclose`, run
by the app at shutdown, waits for calls in flight and for that window.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

from app.core.settings import Settings
from app.storage.blobs import BlobKind, BlobStore, new_blob_key
from tests.e2e.server_process import PROJECT_ROOT

USER = uuid.uuid4()


def disk_store(tmp_path: Path) -> BlobStore:
    return BlobStore.from_settings(Settings(_env_file=None, data_dir=tmp_path))


async def test_close_waits_for_an_upload_in_flight(tmp_path: Path) -> None:
    store = disk_store(tmp_path)
    key = new_blob_key(user_id=USER, kind=BlobKind.BACKUPS)
    release = asyncio.Event()

    async def body() -> AsyncIterator[bytes]:
        yield b"a" * 1024
        await release.wait()
        yield b"b" * 1024

    upload = asyncio.create_task(store.put_stream(key, body()))
    await asyncio.sleep(0.05)
    closing = asyncio.create_task(store.aclose())
    await asyncio.sleep(0.2)

    assert not closing.done(), "close returned while an upload was still being written"
    release.set()
    await upload
    await closing
    assert await store.read(key) == b"a" * 1024 + b"b" * 1024


async def test_close_waits_for_a_download_being_read(tmp_path: Path) -> None:
    store = disk_store(tmp_path)
    key = new_blob_key(user_id=USER, kind=BlobKind.RECORDS)
    await store.put(key, b"x" * 10)
    reader = await store.open(key)
    chunks = reader.__aiter__()
    assert await anext(chunks) == b"x" * 10

    closing = asyncio.create_task(store.aclose())
    await asyncio.sleep(0.1)
    assert not closing.done(), "close returned while a download was open"

    await chunks.aclose()
    await closing


def test_a_process_that_closes_the_store_exits_cleanly(tmp_path: Path) -> None:
    """Without `aclose` about one run in ten of such a script aborted (exit 134)."""
    script = textwrap.dedent(
        f"""
        import asyncio, uuid
        from pathlib import Path
        from app.core.settings import Settings
        from app.storage.blobs import BlobKind, BlobStore, new_blob_key

        async def main() -> None:
            settings = Settings(_env_file=None, data_dir=Path({str(tmp_path)!r}))
            store = BlobStore.from_settings(settings)
            key = new_blob_key(user_id=uuid.uuid4(), kind=BlobKind.RECORDS)
            await store.put(key, b"x" * 1_000_000)
            assert await store.read(key) == b"x" * 1_000_000
            await store.delete([key])
            await store.aclose()

        asyncio.run(main())
        """
    )
    # Four at a time: the abort is a race, so more runs catch it more surely.
    exits: list[int] = []
    for _ in range(6):
        batch = [
            subprocess.Popen(  # noqa: S603 - this interpreter, a fixed script
                [sys.executable, "-c", script],
                cwd=PROJECT_ROOT,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for _ in range(4)
        ]
        exits.extend(process.wait(timeout=60) for process in batch)

    assert exits == [0] * 24
