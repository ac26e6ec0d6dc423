"""SHA-256 checksums of what the desktop uploads, compared in constant time.

The checksum is the desktop's claim about the bytes it encrypted and sent; the
server recomputes it and stores nothing that does not match. Comparing in
constant time keeps the comparison from telling an attacker how much of a
guessed checksum was right.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from collections.abc import AsyncIterable, AsyncIterator, Callable

from app.storage.exceptions import ChecksumMismatchError, EmptyBlobError

# What a checksum looks like on the wire (lower or upper case hex).
SHA256_HEX_PATTERN = r"^[0-9a-fA-F]{64}$"


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def require_checksum(data: bytes, checksum: str) -> None:
    """`ChecksumMismatchError` (400) unless `checksum` is the SHA-256 of `data`."""
    if not hmac.compare_digest(sha256_hex(data), checksum.lower()):
        raise ChecksumMismatchError


class CheckedStream:
    """A request body passed on chunk by chunk while its SHA-256 and size are counted.

    After the last chunk the digest is compared with the expected checksum; on a
    mismatch the iteration raises `ChecksumMismatchError`, so whoever consumes it
    (the blob store's streamed upload) aborts and keeps nothing. Chunks are
    gathered to at least `min_chunk_bytes` before they are passed on, and
    `check_size` sees the count after each one (it raises to stop the upload).
    """

    def __init__(
        self,
        chunks: AsyncIterable[bytes],
        *,
        checksum: str,
        min_chunk_bytes: int,
        check_size: Callable[[int], None] | None = None,
    ) -> None:
        self._chunks = chunks
        self._expected = checksum.lower()
        self._min_chunk_bytes = min_chunk_bytes
        self._check_size = check_size
        self._digest = hashlib.sha256()
        self.size = 0

    def _count(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self._check_size is not None:
            self._check_size(self.size)

    async def _pieces(self) -> AsyncIterator[bytes]:
        pending: list[bytes] = []
        pending_bytes = 0
        async for chunk in self._chunks:
            self._count(chunk)
            pending.append(chunk)
            pending_bytes += len(chunk)
            if pending_bytes >= self._min_chunk_bytes:
                yield b"".join(pending)  # one copy, however many chunks
                pending, pending_bytes = [], 0
        if pending:
            yield b"".join(pending)

    async def __aiter__(self) -> AsyncIterator[bytes]:
        # Each piece is hashed in a worker thread (hashlib lets go of the GIL) while
        # the next one is read and this one is written, beside them rather than
        # between them. One piece at a time, in order, into the one digest.
        loop = asyncio.get_running_loop()
        hashing: asyncio.Future[None] | None = None
        async for piece in self._pieces():
            if hashing is not None:
                await hashing
            hashing = loop.run_in_executor(None, self._digest.update, piece)
            yield piece
        if hashing is not None:
            await hashing
        if self.size == 0:
            raise EmptyBlobError
        if not hmac.compare_digest(self._digest.hexdigest(), self._expected):
            raise ChecksumMismatchError
