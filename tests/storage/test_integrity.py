"""Checksums while streaming: the body passes through whole, and a mismatch ends it."""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator

import pytest

from app.storage.exceptions import ChecksumMismatchError, EmptyBlobError, QuotaExceededError
from app.storage.integrity import CheckedStream, require_checksum


async def pieces(*chunks: bytes) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk


async def drain(stream: CheckedStream, seen: list[bytes] | None = None) -> list[bytes]:
    seen = [] if seen is None else seen
    async for chunk in stream:
        seen.append(chunk)
    return seen


async def test_a_matching_body_passes_through_in_gathered_chunks() -> None:
    chunks = [bytes([n]) * 3 for n in range(5)]
    stream = CheckedStream(
        pieces(*chunks), checksum=hashlib.sha256(b"".join(chunks)).hexdigest(), min_chunk_bytes=6
    )

    passed = await drain(stream)

    assert passed == [chunks[0] + chunks[1], chunks[2] + chunks[3], chunks[4]]
    assert stream.size == 15


async def test_many_pieces_are_hashed_whole_and_in_order() -> None:
    # Pieces are hashed in a worker thread while the next one is read: a piece
    # hashed twice, skipped or out of turn would change the digest.
    chunks = [os.urandom(64 * 1024) for _ in range(64)]
    body = b"".join(chunks)

    stream = CheckedStream(
        pieces(*chunks), checksum=hashlib.sha256(body).hexdigest(), min_chunk_bytes=100 * 1024
    )
    assert b"".join(await drain(stream)) == body

    swapped = CheckedStream(
        pieces(*chunks[1::-1], *chunks[2:]),
        checksum=hashlib.sha256(body).hexdigest(),
        min_chunk_bytes=100 * 1024,
    )
    with pytest.raises(ChecksumMismatchError):
        await drain(swapped)


async def test_a_mismatch_raises_after_the_last_chunk_so_the_upload_aborts() -> None:
    stream = CheckedStream(pieces(b"abc", b"def"), checksum="0" * 64, min_chunk_bytes=1)
    seen: list[bytes] = []

    with pytest.raises(ChecksumMismatchError):
        await drain(stream, seen)

    assert seen == [b"abc", b"def"]  # every byte went on; the end never came


async def test_the_checksum_may_be_upper_case() -> None:
    stream = CheckedStream(
        pieces(b"abc"), checksum=hashlib.sha256(b"abc").hexdigest().upper(), min_chunk_bytes=1
    )

    assert await drain(stream) == [b"abc"]


async def test_an_empty_body_is_refused() -> None:
    stream = CheckedStream(pieces(), checksum=hashlib.sha256(b"").hexdigest(), min_chunk_bytes=1)

    with pytest.raises(EmptyBlobError):
        await drain(stream)


async def test_the_size_check_stops_the_stream_as_soon_as_it_refuses() -> None:
    def at_most_four(size: int) -> None:
        if size > 4:
            raise QuotaExceededError

    stream = CheckedStream(
        pieces(b"abc", b"def", b"ghi"),
        checksum="0" * 64,
        min_chunk_bytes=1,
        check_size=at_most_four,
    )
    seen: list[bytes] = []

    with pytest.raises(QuotaExceededError):
        await drain(stream, seen)

    assert seen == [b"abc"]


def test_require_checksum_compares_the_sha256() -> None:
    require_checksum(b"abc", hashlib.sha256(b"abc").hexdigest())
    with pytest.raises(ChecksumMismatchError):
        require_checksum(b"abd", hashlib.sha256(b"abc").hexdigest())
