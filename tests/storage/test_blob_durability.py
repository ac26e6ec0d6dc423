"""A write to the disk store returns only once its bytes and their names are on the disk.

A power cut cannot be staged in a test, so what is checked is what makes a
write survive one: the blob's file is fsynced, then every directory from its
own up to the store's root, before `put` or `put_stream` returns (the caller
commits the row pointing at the blob right after). The real fsync runs and
the first test records which paths it was given; the others make it fail as
some filesystems do.
"""

from __future__ import annotations

import errno
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from app.core.settings import Settings
from app.storage.blobs import BLOBS_DIRECTORY, BlobKind, BlobStore, new_blob_key
from app.storage.exceptions import StorageUnavailableError


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[BlobStore]:
    """The disk store under `tmp_path` (blobs in `tmp_path/blobs`)."""
    disk = BlobStore.from_settings(Settings(_env_file=None, data_dir=tmp_path))
    yield disk
    await disk.aclose()


@pytest.fixture
def synced(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """The paths fsynced from now on, in order."""
    paths: list[Path] = []
    real_fsync = os.fsync

    def recording_fsync(descriptor: int) -> None:
        real_fsync(descriptor)
        paths.append(Path(os.readlink(f"/proc/self/fd/{descriptor}")))

    monkeypatch.setattr(os, "fsync", recording_fsync)
    return paths


async def _chunks(data: bytes) -> AsyncIterator[bytes]:
    for start in range(0, len(data), 1000):
        yield data[start : start + 1000]


def _put(store: BlobStore, key: str, data: bytes) -> Awaitable[None]:
    return store.put(key, data)


def _put_stream(store: BlobStore, key: str, data: bytes) -> Awaitable[None]:
    return store.put_stream(key, _chunks(data))


@pytest.mark.parametrize("write", [_put, _put_stream], ids=["put", "put_stream"])
async def test_a_disk_write_syncs_the_file_then_each_directory_up_to_the_root(
    tmp_path: Path,
    store: BlobStore,
    synced: list[Path],
    write: Callable[[BlobStore, str, bytes], Awaitable[None]],
) -> None:
    root = (tmp_path / BLOBS_DIRECTORY).resolve()
    user = uuid.uuid4()
    key = new_blob_key(user_id=user, kind=BlobKind.BACKUPS)
    data = os.urandom(5000)

    await write(store, key, data)

    blob = root / key
    assert synced == [blob, blob.parent, root / str(user), root]
    assert blob.read_bytes() == data


def _failing_fsync(monkeypatch: pytest.MonkeyPatch, *, error: int, on_directories: bool) -> None:
    real_fsync = os.fsync

    def fsync(descriptor: int) -> None:
        if Path(os.readlink(f"/proc/self/fd/{descriptor}")).is_dir() == on_directories:
            raise OSError(error, os.strerror(error))
        real_fsync(descriptor)

    monkeypatch.setattr(os, "fsync", fsync)


async def test_a_filesystem_that_cannot_sync_directories_still_stores(
    store: BlobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    _failing_fsync(monkeypatch, error=errno.EINVAL, on_directories=True)
    key = new_blob_key(user_id=uuid.uuid4(), kind=BlobKind.RECORDS)

    await store.put(key, b"kept")

    assert await store.read(key) == b"kept"


async def test_a_file_that_cannot_be_synced_fails_the_write_with_a_503(
    store: BlobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    _failing_fsync(monkeypatch, error=errno.EIO, on_directories=False)
    key = new_blob_key(user_id=uuid.uuid4(), kind=BlobKind.RECORDS)

    with pytest.raises(StorageUnavailableError) as refused:
        await store.put_stream(key, _chunks(b"x" * 5000))

    assert refused.value.status_code == 503
