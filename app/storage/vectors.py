"""Vector items: encrypted blobs with a vector, searched by cosine within one user's items.

An item's vector is either the embedding the desktop chose to share (it may
have transformed it; the server cannot tell) or, for an item sent without one,
a vector derived from the SHA-256 of its blob. Shared vectors are what
`query_vector` searches; every shared vector of a user has one dimension (the
first one stored sets it; to change it, delete them all).

The derived vector is the trade-off the original design made for content the
server cannot read: it is deterministic, so an identical blob gets the
identical vector, but a hash keeps nothing of similarity, so any other blob
lands in an unrelated direction. `query_blob` therefore finds exact duplicates
only (score 1) and this module returns nothing else for it, rather than
ranking noise.

Search is an exact scan of the user's own items (their index on `user_id`):
each user has their own dimension, which rules out one shared ANN index, and
an exact scan keeps every result correct (benchmarks/storage.py times it).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import math
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import Row, delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.models import User
from app.core.settings import Settings
from app.storage import writes
from app.storage.blobs import BlobKind, BlobStore, new_blob_key
from app.storage.exceptions import BlobNotFoundError, InvalidVectorsError, VectorDimensionError
from app.storage.integrity import require_checksum
from app.storage.models import VectorItem
from app.storage.schemas import SearchHit, VectorItemUpsert

# A derived vector has one dimension per byte of the SHA-256.
DERIVED_DIMENSIONS = 32
# Identical vectors are at cosine distance 0; float rounding stays far below this.
SAME_DIRECTION = 1e-6
# Blobs written or read at once for one request.
BLOB_TRANSFERS_AT_ONCE = 16


def derived_vector(blob: bytes) -> list[float]:
    """The vector of an item sent without one: its blob's SHA-256, a byte a dimension,
    centred on zero (never the zero vector)."""
    return [(byte - 127.5) / 127.5 for byte in hashlib.sha256(blob).digest()]


def unit_vector(vector: Sequence[float]) -> list[float] | None:
    """`vector` scaled to length 1, or None for the zero vector (it has no direction).

    Cosine similarity does not see a vector's length, so nothing a search can tell
    is lost; but pgvector stores and computes in 32-bit floats, where a component
    past 3.4e38 does not fit, tiny ones round to zero and a long vector's norm
    overflows. Scaled by its largest component first, so that no square overflows
    or vanishes here either.
    """
    largest = max(map(abs, vector))
    if largest == 0:
        return None
    scaled = [value / largest for value in vector]
    norm = math.sqrt(math.fsum(value * value for value in scaled))
    return [value / norm for value in scaled]


def _embedding_of(item: VectorItemUpsert) -> list[float]:
    """The vector stored for `item`: its shared vector scaled to length 1 (422 for the
    zero vector), or the one derived from its blob."""
    if item.vector is None:
        return derived_vector(item.blob)
    unit = unit_vector(item.vector)
    if unit is None:
        msg = "A vector of zeros has no direction for cosine similarity to compare"
        raise VectorDimensionError(msg)
    return unit


@dataclass(frozen=True, slots=True)
class _Upload:
    item: VectorItemUpsert
    key: str
    embedding: list[float]


def _request_dimension(items: Sequence[VectorItemUpsert]) -> int | None:
    """The one dimension of the request's shared vectors (422 for two or a duplicate
    id), after which every checksum is checked (400)."""
    ids = [item.id for item in items]
    if len(set(ids)) != len(ids):
        raise InvalidVectorsError("Each item id may appear once in an upsert")
    dimensions = {len(item.vector) for item in items if item.vector is not None}
    if len(dimensions) > 1:
        msg = f"The vectors of one upsert must have one dimension, not {sorted(dimensions)}"
        raise VectorDimensionError(msg)
    for item in items:
        require_checksum(item.blob, item.checksum)
    return dimensions.pop() if dimensions else None


async def _stored_dimension(*, session: AsyncSession, user_id: uuid.UUID) -> int | None:
    """The dimension of the user's shared vectors, if they have any."""
    dimension = await session.scalar(
        select(func.vector_dims(VectorItem.embedding))
        .where(VectorItem.user_id == user_id, VectorItem.derived.is_(False))
        .limit(1)
    )
    return None if dimension is None else int(dimension)


def _require_dimension(stored: int, given: int) -> None:
    if stored != given:
        msg = (
            f"Your vectors have {stored} dimensions; this one has {given} "
            "(delete them all to change the dimension)"
        )
        raise VectorDimensionError(msg)


async def _put_all(blobs: BlobStore, uploads: Sequence[_Upload]) -> None:
    turns = asyncio.Semaphore(BLOB_TRANSFERS_AT_ONCE)

    async def put(upload: _Upload) -> None:
        async with turns:
            await blobs.put(upload.key, upload.item.blob)

    try:
        async with asyncio.TaskGroup() as group:
            for upload in uploads:
                group.create_task(put(upload))
    except BaseExceptionGroup as group_error:
        await writes.discard(blobs, [upload.key for upload in uploads])
        raise group_error.exceptions[0] from None


async def upsert_vectors(
    *,
    session: AsyncSession,
    blobs: BlobStore,
    settings: Settings,
    user: User,
    items: Sequence[VectorItemUpsert],
) -> int:
    """Insert the items, or replace those whose id the user already has; all or none."""
    await writes.admit(session=session, settings=settings, user=user)
    dimension = _request_dimension(items)
    uploads = [
        _Upload(
            item=item,
            key=new_blob_key(user_id=user.id, kind=BlobKind.VECTORS),
            embedding=_embedding_of(item),
        )
        for item in items
    ]
    await writes.release(session)
    await _put_all(blobs, uploads)
    async with writes.landing(
        session=session,
        blobs=blobs,
        settings=settings,
        user_id=user.id,
        new_keys=[upload.key for upload in uploads],
    ) as turn:
        stored = await _stored_dimension(session=session, user_id=user.id)
        if dimension is not None and stored is not None:
            _require_dimension(stored, dimension)
        existing = {
            row.item_id: row
            for row in await session.scalars(
                select(VectorItem).where(
                    VectorItem.user_id == user.id,
                    VectorItem.item_id.in_([item.id for item in items]),
                )
            )
        }
        replaced: list[str] = []
        for upload in uploads:
            item = upload.item
            values = {
                "blob_key": upload.key,
                "checksum": item.checksum,
                "size_bytes": len(item.blob),
                "embedding": upload.embedding,
                "derived": item.vector is None,
            }
            row = existing.get(item.id)
            if row is None:
                session.add(VectorItem(user_id=user.id, item_id=item.id, **values))
            else:
                replaced.append(row.blob_key)
                for name, value in values.items():
                    setattr(row, name, value)
        await turn.check_room()
    await writes.discard(blobs, replaced)
    return len(uploads)


async def _hits(blobs: BlobStore, rows: Sequence[Row[tuple[str, str, float]]]) -> list[SearchHit]:
    """The rows with their blobs, read at once; an item deleted meanwhile is left out."""
    turns = asyncio.Semaphore(BLOB_TRANSFERS_AT_ONCE)

    async def read(key: str) -> bytes | None:
        async with turns:
            try:
                return await blobs.read(key)
            except BlobNotFoundError:
                return None

    contents = await asyncio.gather(*(read(row.blob_key) for row in rows))
    return [
        SearchHit(id=row.item_id, score=1.0 - row.distance, blob=base64.b64encode(blob).decode())
        for row, blob in zip(rows, contents, strict=True)
        if blob is not None
    ]


async def search(
    *,
    session: AsyncSession,
    blobs: BlobStore,
    user_id: uuid.UUID,
    query_vector: list[float] | None,
    query_blob: bytes | None,
    top_k: int,
) -> list[SearchHit]:
    """The user's `top_k` items nearest `query_vector` by cosine, most similar first; or
    those stored without a vector whose blob is `query_blob` exactly. A zero query
    vector has no direction and finds nothing."""
    if query_vector is not None:
        stored = await _stored_dimension(session=session, user_id=user_id)
        direction = unit_vector(query_vector)
        if stored is None or direction is None:
            return []  # nothing to compare with; a zero vector points nowhere
        _require_dimension(stored, len(query_vector))
        distance = VectorItem.embedding.cosine_distance(direction)
        matching = VectorItem.derived.is_(False)
    else:
        assert query_blob is not None  # the schema asks for one of the two
        distance = VectorItem.embedding.cosine_distance(derived_vector(query_blob))
        matching = VectorItem.derived.is_(True)
    rows = (
        await session.execute(
            select(VectorItem.item_id, VectorItem.blob_key, distance.label("distance"))
            .where(VectorItem.user_id == user_id, matching)
            .order_by(distance, VectorItem.item_id)
            .limit(top_k)
        )
    ).all()
    await writes.release(session)
    if query_blob is not None:
        # Filtered here, not in SQL: PostgreSQL may compare a vector of another
        # dimension before it applies `derived`, which fails.
        rows = [row for row in rows if row.distance <= SAME_DIRECTION]
    return await _hits(blobs, rows)


async def delete_vectors(
    *, session: AsyncSession, blobs: BlobStore, user_id: uuid.UUID, ids: Sequence[str]
) -> int:
    """Delete the user's items with these ids (others' ids and unknown ones are
    ignored); how many there were."""
    rows = delete(VectorItem).where(
        VectorItem.user_id == user_id, VectorItem.item_id.in_(list(ids))
    )
    return await writes.remove(session=session, blobs=blobs, user_id=user_id, rows=rows)
