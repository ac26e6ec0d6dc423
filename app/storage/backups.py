"""Backups: whole encrypted snapshots of the desktop's data, streamed in and out.

The body goes straight from the request to the blob store (`CheckedStream`):
its SHA-256 and size are counted on the way, and a mismatch, a body past the
quota or a client that leaves aborts the upload, so nothing is kept. The last
BACKUP_KEEP backups are kept: landing a new one removes the older ones in the
same transaction (and their blobs after it).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterable

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.models import User
from app.core.settings import Settings
from app.storage import quota, writes
from app.storage.blobs import HANDOFF_BYTES, BlobKind, BlobReader, BlobStore, new_blob_key
from app.storage.exceptions import BlobNotFoundError
from app.storage.integrity import CheckedStream
from app.storage.models import Backup

BACKUP_NOT_FOUND = "No such backup"
NO_BACKUP_YET = "No backup yet"
_NEWEST_FIRST = (Backup.created_at.desc(), Backup.id.desc())


async def _bytes_pushed_out(*, session: AsyncSession, user_id: uuid.UUID, keep: int) -> int:
    """Bytes of the backups one more upload pushes out of the last `keep`."""
    older = (
        select(Backup.size_bytes)
        .where(Backup.user_id == user_id)
        .order_by(*_NEWEST_FIRST)
        .offset(keep - 1)
        .subquery()
    )
    return int(await session.scalar(select(func.coalesce(func.sum(older.c.size_bytes), 0))) or 0)


async def _prune(*, session: AsyncSession, user_id: uuid.UUID, keep: int) -> list[str]:
    """Delete the user's backups past the newest `keep`; their blob keys."""
    older = (
        await session.execute(
            select(Backup.id, Backup.blob_key)
            .where(Backup.user_id == user_id)
            .order_by(*_NEWEST_FIRST)
            .offset(keep)
        )
    ).all()
    if older:
        await session.execute(delete(Backup).where(Backup.id.in_([row.id for row in older])))
    return [row.blob_key for row in older]


async def store_backup(
    *,
    session: AsyncSession,
    blobs: BlobStore,
    settings: Settings,
    user: User,
    version: str,
    timestamp_ms: int,
    checksum: str,
    declared_size: int | None,
    body: AsyncIterable[bytes],
) -> Backup:
    """Stream `body` into a new backup of the user's and keep the newest BACKUP_KEEP.

    Refused before a byte is read: a plan without storage, a user over quota, a
    `declared_size` (Content-Length) past the room left. While streaming: past the
    room left (403), a checksum mismatch or an empty body (400).
    """
    admission = await writes.admit(session=session, settings=settings, user=user)
    # What the quota sees once retention has made room for this one.
    used = admission.used - await _bytes_pushed_out(
        session=session, user_id=user.id, keep=settings.backup_keep
    )
    await writes.release(session)

    def check_arrived(size: int) -> None:
        quota.require_room(
            limits=admission.limits, used=used, after=used + size, arriving=declared_size is None
        )

    if declared_size is not None:
        quota.require_room(limits=admission.limits, used=used, after=used + declared_size)
    stream = CheckedStream(
        body, checksum=checksum, min_chunk_bytes=HANDOFF_BYTES, check_size=check_arrived
    )
    key = new_blob_key(user_id=user.id, kind=BlobKind.BACKUPS)
    await blobs.put_stream(key, stream)
    backup = Backup(
        user_id=user.id,
        version=version,
        timestamp_ms=timestamp_ms,
        blob_key=key,
        checksum=checksum.lower(),
        size_bytes=stream.size,
    )
    async with writes.landing(
        session=session, blobs=blobs, settings=settings, user_id=user.id, new_keys=[key]
    ) as turn:
        session.add(backup)
        await session.flush()
        pruned = await _prune(session=session, user_id=user.id, keep=settings.backup_keep)
        await turn.check_room()
    await writes.discard(blobs, pruned)
    return backup


async def find_backup(
    *, session: AsyncSession, user_id: uuid.UUID, backup_id: uuid.UUID | None
) -> Backup:
    """The user's backup `backup_id`, or their newest; 404 for anyone else's or none."""
    query = select(Backup).where(Backup.user_id == user_id)
    if backup_id is not None:
        query = query.where(Backup.id == backup_id)
    backup = await session.scalar(query.order_by(*_NEWEST_FIRST).limit(1))
    if backup is None:
        raise BlobNotFoundError(BACKUP_NOT_FOUND if backup_id is not None else NO_BACKUP_YET)
    return backup


async def open_backup(*, session: AsyncSession, blobs: BlobStore, backup: Backup) -> BlobReader:
    """The backup's bytes, ready to stream (no database connection is held meanwhile)."""
    await writes.release(session)
    return await blobs.open(backup.blob_key)


async def backup_history(*, session: AsyncSession, user_id: uuid.UUID) -> list[Backup]:
    """The user's backups, newest first."""
    return list(
        await session.scalars(
            select(Backup).where(Backup.user_id == user_id).order_by(*_NEWEST_FIRST)
        )
    )


async def delete_backup(
    *, session: AsyncSession, blobs: BlobStore, user_id: uuid.UUID, backup_id: uuid.UUID
) -> None:
    """Delete the user's backup: its row, then its blob."""
    rows = delete(Backup).where(Backup.id == backup_id, Backup.user_id == user_id)
    if not await writes.remove(session=session, blobs=blobs, user_id=user_id, rows=rows):
        raise BlobNotFoundError(BACKUP_NOT_FOUND)
