"""The blob store: opaque bytes under `{user_id}/{kind}/{blob_id}`, on the disk or in S3.

One interface, two backends, one library: obstore (Rust's `object_store`) gives
the local filesystem (`DATA_DIR/blobs`, the default) and any S3-compatible store
(when S3_BUCKET is set) the same async API, with streamed uploads (multipart,
atomic: a failed or abandoned upload leaves nothing) and streamed downloads.
The disk backend's reads are the one exception: the server opens the file
itself and reads it in ranges (`BlobReader`), faster than the library's
stream and unbroken by a delete that lands meanwhile.

Keys hold two server-made UUIDs and a kind, never anything the user wrote. A
`blob_id` names one stored version: an update writes a new blob and then
points its row at it, so no committed row ever sees its bytes change.

Every failure of the store itself (S3 down, a full disk) surfaces as
`StorageUnavailableError` (503); a missing blob as `BlobNotFoundError` (404).

A write returns once its bytes are durable, as an S3 PUT does: on the disk
the library only writes and renames (object_store's `LocalFileSystem` calls no
fsync, and obstore does not expose its later opt-in), so the store fsyncs the
file and the directories leading to it before the caller commits a row that
points at it. Without that a power cut could keep the committed row and lose
the bytes it acknowledged.

obstore runs its calls on a Tokio runtime whose threads outlive each call by a
few milliseconds (they hand the result back and drop their references to
Python objects). If the interpreter finalises inside that window the process
aborts (SIGABRT, exit 134; measured: 5 in 60 scripts exiting right after a
call, none when they waited 5 ms). So the store counts its calls in flight and
`aclose`, run at shutdown, waits for them and then for the runtime to settle.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import re
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from io import FileIO
from pathlib import Path
from typing import TYPE_CHECKING

import obstore
from obstore.exceptions import BaseError as ObjectStoreError
from obstore.exceptions import NotFoundError as ObjectNotFoundError
from obstore.store import LocalStore, S3Store

from app.core.settings import Settings
from app.storage.exceptions import BlobNotFoundError, StorageUnavailableError

if TYPE_CHECKING:
    from obstore import GetResult
    from obstore.store import ClientConfig, RetryConfig, S3Config

logger = logging.getLogger(__name__)

BLOBS_DIRECTORY = "blobs"
# Uploads go in parts of this size, at most this many in flight: what one upload may
# hold in memory (S3 takes parts of at least 5 MiB).
UPLOAD_PART_BYTES = 8 * 1024 * 1024
UPLOAD_PARTS_IN_FLIGHT = 2
# A streamed upload is handed to the store in pieces of about this size (fewer, larger
# calls into the library than the server's 64 KiB reads).
HANDOFF_BYTES = 1024 * 1024
# Downloads are handed on in chunks of at least this size (S3), or read from the disk in
# ranges of this size.
DOWNLOAD_CHUNK_BYTES = 1024 * 1024
READ_RANGE_BYTES = 4 * 1024 * 1024
# S3: a store that does not answer fails fast (after a few quick retries) with a 503,
# while a long download may take its time as long as bytes keep coming.
S3_CONNECT_TIMEOUT = timedelta(seconds=5)
S3_READ_TIMEOUT = timedelta(seconds=30)
S3_REQUEST_TIMEOUT = timedelta(hours=1)
S3_MAX_RETRIES = 3
S3_RETRY_TIMEOUT = timedelta(seconds=10)

# Shutdown: how long to wait for calls still in flight, and how long after the last
# call the library's runtime threads need before the interpreter may finalise (ten
# times the window measured above).
CLOSE_TIMEOUT_S = 10.0
RUNTIME_SETTLE_S = 0.05

_UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"


class BlobKind(StrEnum):
    RECORDS = "records"
    VECTORS = "vectors"
    BACKUPS = "backups"
    PLUGINS = "plugins"  # marketplace packages (app.plugins), under their author's id


# Only keys of this shape are ever written, listed for the sweep or deleted by it: a
# bucket shared with other data keeps the rest.
BLOB_KEY_PATTERN = re.compile(rf"^{_UUID}/(?:{'|'.join(kind.value for kind in BlobKind)})/{_UUID}$")


def new_blob_key(*, user_id: uuid.UUID, kind: BlobKind) -> str:
    """A fresh key for one blob of the user's: `{user_id}/{kind}/{blob_id}`."""
    return f"{user_id}/{kind.value}/{uuid.uuid4()}"


@dataclass(frozen=True, slots=True)
class ListedBlob:
    key: str
    last_modified: datetime


class _CallsInFlight:
    """The library calls under way, and when the last one ended (see the module doc)."""

    def __init__(self) -> None:
        self._count = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._last_ended: float | None = None

    @contextlib.contextmanager
    def call(self) -> Iterator[None]:
        self._count += 1
        self._idle.clear()
        try:
            yield
        finally:
            self._count -= 1
            self._last_ended = time.monotonic()
            if self._count == 0:
                self._idle.set()

    async def settled(self, *, timeout_s: float) -> None:
        """Once no call is in flight (or `timeout_s` passed) and the runtime has settled."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout_s)
        except TimeoutError:
            logger.warning("blob store closed with calls in flight", extra={"calls": self._count})
        if self._last_ended is not None:
            await asyncio.sleep(max(0.0, self._last_ended + RUNTIME_SETTLE_S - time.monotonic()))


class BlobReader:
    """An opened blob: its size, and its bytes as they come (`async for`).

    From S3, one GET streamed. From the disk, the file opened once by `BlobStore.open`
    and read in ranges of `READ_RANGE_BYTES` (the library streams a local file in 8 KiB
    pieces, ten times slower): a blob deleted after it was opened (a delete, a replace,
    retention pruning an old backup) is still read whole, as a GET under way on S3 is.
    A failure of the store midway cuts the response short: the client sees fewer bytes
    than Content-Length said, and the log says why.
    """

    def __init__(
        self,
        *,
        size: int,
        calls: _CallsInFlight,
        result: GetResult | None = None,
        file: FileIO | None = None,
    ) -> None:
        self._result = result
        self._file = file
        self._calls = calls
        self.size = size

    async def _chunks(self) -> AsyncIterator[bytes]:
        if self._result is not None:
            async for chunk in self._result.stream(min_chunk_size=DOWNLOAD_CHUNK_BYTES):
                yield chunk
            return
        assert self._file is not None  # `BlobStore.open` gives one or the other
        with self._file:
            descriptor = self._file.fileno()
            for start in range(0, self.size, READ_RANGE_BYTES):
                length = min(READ_RANGE_BYTES, self.size - start)
                chunk = await asyncio.to_thread(os.pread, descriptor, length, start)
                if len(chunk) < length:  # blobs never change once written
                    raise OSError(errno.EIO, "the blob is shorter than when it was opened")
                yield chunk

    async def __aiter__(self) -> AsyncGenerator[bytes]:
        with self._calls.call():
            try:
                async for chunk in self._chunks():
                    yield chunk
            except (ObjectStoreError, OSError) as exc:
                raise _unavailable(exc, detail=_READ_FAILED) from exc


_WRITE_FAILED = "Storage is unavailable; nothing was stored, try again shortly"
_READ_FAILED = "Storage is unavailable; try again shortly"


def _unavailable(exc: BaseException, *, detail: str) -> StorageUnavailableError:
    logger.warning("blob store failed", extra={"error": type(exc).__name__, "cause": str(exc)})
    return StorageUnavailableError(detail)


def _fsync(path: Path, *, directory: bool) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    except OSError as exc:
        # As PostgreSQL does: some filesystems cannot fsync a directory (EINVAL, EBADF);
        # its entries are then as durable as that filesystem makes them.
        if not (directory and exc.errno in {errno.EINVAL, errno.EBADF}):
            raise
    finally:
        os.close(descriptor)


def _sync_to_disk(root: Path, key: str) -> None:
    """fsync the blob under `key`, then each directory from its own up to `root`, so
    both its bytes and the names that lead to them survive a power cut."""
    path = root / key
    _fsync(path, directory=False)
    for directory in path.parents[: len(Path(key).parts)]:
        _fsync(directory, directory=True)


class BlobStore:
    """Where the bytes are; `description` says which backend (logged at start-up).

    `disk_root` is the directory of a disk store, whose writes are fsynced (module doc).
    """

    def __init__(
        self, store: LocalStore | S3Store, *, description: str, disk_root: Path | None = None
    ) -> None:
        self._store = store
        self._calls = _CallsInFlight()
        self._disk_root = disk_root
        self.description = description

    @classmethod
    def from_settings(cls, settings: Settings) -> BlobStore:
        """S3 (or a compatible store) when S3_BUCKET is set, else `DATA_DIR/blobs`."""
        if settings.s3_bucket is None:
            root = (settings.data_dir / BLOBS_DIRECTORY).resolve()
            root.mkdir(parents=True, exist_ok=True, mode=0o700)
            disk = LocalStore(root, automatic_cleanup=True)
            return cls._opened(disk, f"disk {root}", disk_root=root)
        endpoint = settings.s3_endpoint_url
        client: ClientConfig = {
            "allow_http": bool(endpoint and endpoint.startswith("http://")),
            "connect_timeout": S3_CONNECT_TIMEOUT,
            "read_timeout": S3_READ_TIMEOUT,
            "timeout": S3_REQUEST_TIMEOUT,
        }
        retry: RetryConfig = {"max_retries": S3_MAX_RETRIES, "retry_timeout": S3_RETRY_TIMEOUT}
        config: S3Config = {"region": settings.s3_region}
        if endpoint:
            config["endpoint"] = endpoint
        if settings.s3_access_key_id is not None:
            config["access_key_id"] = settings.s3_access_key_id
        if settings.s3_secret_access_key is not None:
            config["secret_access_key"] = settings.s3_secret_access_key.get_secret_value()
        store = S3Store(
            settings.s3_bucket, config=config, client_options=client, retry_config=retry
        )
        where = endpoint or "AWS S3"
        return cls._opened(store, f"bucket {settings.s3_bucket} at {where}")

    @classmethod
    def _opened(
        cls, store: LocalStore | S3Store, description: str, *, disk_root: Path | None = None
    ) -> BlobStore:
        logger.info("cloud storage blobs", extra={"store": description})
        return cls(store, description=description, disk_root=disk_root)

    async def _make_durable(self, key: str) -> None:
        if self._disk_root is not None:
            await asyncio.to_thread(_sync_to_disk, self._disk_root, key)

    async def put(self, key: str, data: bytes) -> None:
        """Store `data` under `key` in one atomic write, durable when this returns."""
        try:
            with self._calls.call():
                await obstore.put_async(self._store, key, data, use_multipart=False)
                await self._make_durable(key)
        except (ObjectStoreError, OSError) as exc:
            raise _unavailable(exc, detail=_WRITE_FAILED) from exc

    async def put_stream(self, key: str, chunks: AsyncIterable[bytes]) -> None:
        """Store what `chunks` yields under `key`, holding a few parts in memory at most;
        durable when this returns.

        If `chunks` raises (a checksum mismatch, a client that left), that exception
        comes out of here unchanged and nothing is stored: the upload is aborted.
        """
        try:
            with self._calls.call():
                await obstore.put_async(
                    self._store,
                    key,
                    chunks,
                    use_multipart=True,
                    chunk_size=UPLOAD_PART_BYTES,
                    max_concurrency=UPLOAD_PARTS_IN_FLIGHT,
                )
                await self._make_durable(key)
        except (ObjectStoreError, OSError) as exc:
            raise _unavailable(exc, detail=_WRITE_FAILED) from exc

    async def open(self, key: str) -> BlobReader:
        """The blob under `key`, ready to stream; 404 if there is none."""
        try:
            if self._disk_root is not None:
                file = await asyncio.to_thread(FileIO, self._disk_root / key)
                size = os.fstat(file.fileno()).st_size
                return BlobReader(size=size, file=file, calls=self._calls)
            with self._calls.call():
                result = await obstore.get_async(self._store, key)
        except (ObjectNotFoundError, FileNotFoundError) as exc:
            raise BlobNotFoundError from exc
        except (ObjectStoreError, OSError) as exc:
            raise _unavailable(exc, detail=_READ_FAILED) from exc
        return BlobReader(size=result.meta["size"], result=result, calls=self._calls)

    async def read(self, key: str) -> bytes:
        """The whole blob under `key` (small blobs only: records and vector items)."""
        reader = await self.open(key)
        return b"".join([chunk async for chunk in reader])

    async def delete(self, keys: Sequence[str]) -> None:
        """Remove the blobs under `keys`; a key with no blob is not an error."""
        if not keys:
            return
        try:
            with self._calls.call():
                try:
                    await obstore.delete_async(self._store, list(keys))
                except (ObjectNotFoundError, FileNotFoundError):
                    # The disk backend stops at the first missing file: the rest one by one.
                    for key in keys:
                        with contextlib.suppress(ObjectNotFoundError, FileNotFoundError):
                            await obstore.delete_async(self._store, key)
        except (ObjectStoreError, OSError) as exc:
            raise _unavailable(exc, detail=_READ_FAILED) from exc

    async def listing(self) -> AsyncIterator[list[ListedBlob]]:
        """Every blob this server wrote, a page at a time (the orphan sweep's view)."""
        try:
            with self._calls.call():
                async for page in obstore.list(self._store, chunk_size=1000):
                    yield [
                        ListedBlob(key=meta["path"], last_modified=meta["last_modified"])
                        for meta in page
                        if BLOB_KEY_PATTERN.match(meta["path"])
                    ]
        except (ObjectStoreError, OSError) as exc:
            raise _unavailable(exc, detail=_READ_FAILED) from exc

    async def aclose(self) -> None:
        """Wait for calls in flight and for the library's runtime to settle (module doc)."""
        await self._calls.settled(timeout_s=CLOSE_TIMEOUT_S)
