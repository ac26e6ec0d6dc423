"""Records: one encrypted row of a desktop table each, stored as an opaque blob."""

from __future__ import annotations

import uuid

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.models import User
from app.core.settings import Settings
from app.storage import writes
from app.storage.blobs import BlobKind, BlobStore, new_blob_key
from app.storage.exceptions import BlobNotFoundError
from app.storage.integrity import require_checksum
from app.storage.models import StoredRecord

RECORD_NOT_FOUND = "No such record"


async def create_record(
    *,
    session: AsyncSession,
    blobs: BlobStore,
    settings: Settings,
    user: User,
    table: str,
    blob: bytes,
    checksum: str,
) -> StoredRecord:
    """Store a new record: checked, written, then committed with its row."""
    await writes.admit(session=session, settings=settings, user=user)
    require_checksum(blob, checksum)
    await writes.release(session)
    key = new_blob_key(user_id=user.id, kind=BlobKind.RECORDS)
    await blobs.put(key, blob)
    record = StoredRecord(
        user_id=user.id, table_name=table, blob_key=key, checksum=checksum, size_bytes=len(blob)
    )
    async with writes.landing(
        session=session, blobs=blobs, settings=settings, user_id=user.id, new_keys=[key]
    ) as turn:
        session.add(record)
        await turn.check_room()
    return record


async def list_records(
    *, session: AsyncSession, user_id: uuid.UUID, table: str | None, page: int, limit: int
) -> list[StoredRecord]:
    """The user's records (of `table`, if given), oldest first, `limit` a page."""
    query = select(StoredRecord).where(StoredRecord.user_id == user_id)
    if table is not None:
        query = query.where(StoredRecord.table_name == table)
    rows = await session.scalars(
        query.order_by(StoredRecord.created_at, StoredRecord.id)
        .offset((page - 1) * limit)
        .limit(limit)
    )
    return list(rows)


async def get_record(
    *, session: AsyncSession, user_id: uuid.UUID, record_id: uuid.UUID
) -> StoredRecord:
    """The user's record `record_id`; 404 for anyone else's or none."""
    record = await session.scalar(
        select(StoredRecord).where(StoredRecord.id == record_id, StoredRecord.user_id == user_id)
    )
    if record is None:
        raise BlobNotFoundError(RECORD_NOT_FOUND)
    return record


async def read_record(*, session: AsyncSession, blobs: BlobStore, record: StoredRecord) -> bytes:
    """The record's encrypted bytes, as uploaded."""
    await writes.release(session)
    return await blobs.read(record.blob_key)


async def replace_record(
    *,
    session: AsyncSession,
    blobs: BlobStore,
    settings: Settings,
    user: User,
    record_id: uuid.UUID,
    blob: bytes,
    checksum: str,
) -> StoredRecord:
    """Replace the record's bytes: the new blob is written, the row repointed, the old
    blob removed after the commit."""
    await writes.admit(session=session, settings=settings, user=user)
    await get_record(session=session, user_id=user.id, record_id=record_id)
    require_checksum(blob, checksum)
    await writes.release(session)
    key = new_blob_key(user_id=user.id, kind=BlobKind.RECORDS)
    await blobs.put(key, blob)
    async with writes.landing(
        session=session, blobs=blobs, settings=settings, user_id=user.id, new_keys=[key]
    ) as turn:
        # Again, under the lock: it may have been deleted meanwhile.
        record = await get_record(session=session, user_id=user.id, record_id=record_id)
        replaced = record.blob_key
        record.blob_key, record.checksum, record.size_bytes = key, checksum, len(blob)
        await turn.check_room()
    await writes.discard(blobs, [replaced])
    return record


async def delete_record(
    *, session: AsyncSession, blobs: BlobStore, user_id: uuid.UUID, record_id: uuid.UUID
) -> None:
    """Delete the record: its row, then its blob."""
    rows = delete(StoredRecord).where(StoredRecord.id == record_id, StoredRecord.user_id == user_id)
    if not await writes.remove(session=session, blobs=blobs, rows=rows):
        raise BlobNotFoundError(RECORD_NOT_FOUND)
