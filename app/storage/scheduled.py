"""The orphan sweep, on a schedule: blobs no row points to are removed once old enough.

A blob is written before its row commits, and a replaced or deleted blob is
removed after; a crash (or a failed delete) in between leaves a blob without a
row. Such a blob is never counted (usage is summed from rows), and this sweep
removes it once it is older than STORAGE_ORPHAN_AGE_S (an hour by default),
far longer than any write takes between its blob and its commit.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from sqlalchemy import select, union_all
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.storage.blobs import BlobStore
from app.storage.models import Backup, StoredRecord, VectorItem

logger = logging.getLogger(__name__)

# Keys asked about in one query, and removed in one call.
KEYS_PER_BATCH = 500


async def _keys_with_rows(*, session: AsyncSession, keys: Sequence[str]) -> set[str]:
    statements = [
        select(model.blob_key).where(model.blob_key.in_(keys))
        for model in (StoredRecord, VectorItem, Backup)
    ]
    return set(await session.scalars(union_all(*statements)))


async def sweep_orphans(
    *,
    sessionmaker: async_sessionmaker[AsyncSession],
    blobs: BlobStore,
    min_age: timedelta,
    now: datetime,
) -> int:
    """Remove the blobs older than `min_age` that no row points to; how many."""
    cutoff = now - min_age
    orphans: list[str] = []
    async for page in blobs.listing():
        old = [blob.key for blob in page if blob.last_modified < cutoff]
        for start in range(0, len(old), KEYS_PER_BATCH):
            batch = old[start : start + KEYS_PER_BATCH]
            async with sessionmaker() as session:
                kept = await _keys_with_rows(session=session, keys=batch)
            orphans.extend(key for key in batch if key not in kept)
    # Removed once the listing is done, so it never walks what it is deleting.
    for start in range(0, len(orphans), KEYS_PER_BATCH):
        await blobs.delete(orphans[start : start + KEYS_PER_BATCH])
    return len(orphans)


async def run_orphan_sweep_forever(
    *,
    sessionmaker: async_sessionmaker[AsyncSession],
    blobs: BlobStore,
    interval_s: float,
    min_age_s: float,
) -> None:
    """The scheduled job (started by the app's lifespan): a sweep now, then every
    `interval_s`."""
    while True:
        try:
            removed = await sweep_orphans(
                sessionmaker=sessionmaker,
                blobs=blobs,
                min_age=timedelta(seconds=min_age_s),
                now=datetime.now(UTC),
            )
            if removed:
                logger.info("orphan blobs removed", extra={"count": removed})
        except Exception:  # a failed sweep (S3 or the database down) must not end the job
            logger.exception("the orphan sweep failed; trying again at the next one")
        await asyncio.sleep(interval_s)
