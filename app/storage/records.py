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
# A read that keeps losing the race with replaces gives up after this many tries.
READ_ATTEMPTS = 3


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
    *, session: AsyncSession, user_id: uuid.UUID, record_id: uuid.UUID, fresh: bool = False
) -> StoredRecord:
    """The user's record `record_id`; 404 for anyone else's or none. `fresh` reads the
    row as committed now, even if this session has it loaded already."""
    record = await session.scalar(
        select(StoredRecord)
        .where(StoredRecord.id == record_id, StoredRecord.user_id == user_id)
        .execution_options(populate_existing=fresh)
    )
    if record is None:
        raise BlobNotFoundError(RECORD_NOT_FOUND)
    return record


async def read_record(
    *, session: AsyncSession, blobs: BlobStore, record: StoredRecord
) -> tuple[StoredRecord, bytes]:
    """The record's encrypted bytes, as uploaded, with the row they belong to.

    A replace that lands between reading the row and opening its blob removes
    that blob: the row is then read again and its new blob returned (404 only
    if the record was deleted meanwhile).
    """
    for _ in range(READ_ATTEMPTS):
        await writes.release(session)
        try:
            return record, await blobs.read(record.blob_key)
        except BlobNotFoundError:
            replaced = record.blob_key
            record = await get_record(
                session=session, user_id=record.user_id, record_id=record.id, fresh=True
            )
            if record.blob_key == replaced:
                raise  # the row still points at a blob that is gone: the store lost it
    raise BlobNotFoundError(RECORD_NOT_FOUND)


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
        record = await get_record(session=session, user_id=user.id, record_id=record_id, fresh=True)
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
    if not await writes.remove(session=session, blobs=blobs, user_id=user_id, rows=rows):
        raise BlobNotFoundError(RECORD_NOT_FOUND)
