"""How a write lands: the blob first, then its row, and the bytes it replaced last.

1. The new blob is written under a fresh key (no database connection is held
   meanwhile: `release`).
2. One transaction takes the user's turn (`quota.lock_account`), inserts or
   repoints the row and checks the quota (`landing`, `Turn.check_room`). If
   anything in it fails, it rolls back and the new blob is removed.
3. After the commit, the blobs no row points to any more are removed
   (`discard`).

A crash between 1 and 2 leaves a blob without a row, never a row without its
blob; a crash after 2 leaves the replaced blob. Both are orphans, which the
sweep (`app.storage.scheduled`) removes once they are old enough. Usage is
summed from rows, so neither is ever counted.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass

from sqlalchemy import Delete
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth import service as auth_service
from app.auth.models import User
from app.core.settings import Settings
from app.storage import quota
from app.storage.blobs import BlobStore
from app.storage.exceptions import StorageUnavailableError
from app.tiers.matrix import Feature, TierLimits, limits_for, require_feature

logger = logging.getLogger(__name__)


async def release(session: AsyncSession) -> None:
    """End the request's transaction, so no connection waits on a long transfer."""
    await session.commit()


async def discard(blobs: BlobStore, keys: Sequence[str]) -> None:
    """Remove blobs no committed row points to; a failure is logged, and the orphan
    sweep removes them later."""
    if not keys:
        return
    try:
        # Shielded: a request cancelled while cleaning up still cleans up.
        await asyncio.shield(blobs.delete(keys))
    except (StorageUnavailableError, asyncio.CancelledError):
        logger.warning("blobs left for the orphan sweep", extra={"count": len(keys)})


async def remove(
    *, session: AsyncSession, blobs: BlobStore, user_id: uuid.UUID, rows: Delete
) -> int:
    """Delete `rows` of the user's stored blobs, commit, then remove their blobs; how
    many rows there were.

    It takes the user's turn like every write, so a replace that has read a row under
    its turn finds it still there when it updates it.
    """
    await quota.lock_account(session=session, user_id=user_id)
    keys: list[str] = list(await session.scalars(rows.returning(rows.table.c.blob_key)))
    await session.commit()
    await discard(blobs, keys)
    return len(keys)


@dataclass(frozen=True, slots=True)
class Turn:
    """One user's write holding their turn: their plan's limits and their usage as they
    were before the write, both read under the lock."""

    session: AsyncSession
    user_id: uuid.UUID
    limits: TierLimits
    used: int

    async def check_room(self) -> None:
        """After the rows changed: refuse (403) if the write takes the user past their
        quota, or if they were over it already."""
        await self.session.flush()
        after = await quota.used_bytes(session=self.session, user_id=self.user_id)
        quota.require_room(limits=self.limits, used=self.used, after=after)


@asynccontextmanager
async def landing(
    *,
    session: AsyncSession,
    blobs: BlobStore,
    settings: Settings,
    user_id: uuid.UUID,
    new_keys: Sequence[str],
) -> AsyncIterator[Turn]:
    """The transaction that lands blobs already written under `new_keys`.

    It takes the user's turn and reads their plan (as stored now: a plan change
    during the upload counts) and usage; the block changes the rows and calls
    `Turn.check_room`. On leaving it commits; if the block or the commit fails,
    it rolls back and removes the new blobs.
    """
    try:
        await quota.lock_account(session=session, user_id=user_id)
        plan = await auth_service.plan_of(session=session, user_id=user_id)
        yield Turn(
            session=session,
            user_id=user_id,
            limits=limits_for(plan.tier, settings=settings),
            used=await quota.used_bytes(session=session, user_id=user_id),
        )
        await session.commit()
    except BaseException:
        await session.rollback()
        await discard(blobs, new_keys)
        raise


@dataclass(frozen=True, slots=True)
class Admission:
    """What a write may take, as read before it starts (without the lock)."""

    limits: TierLimits
    used: int


async def admit(*, session: AsyncSession, settings: Settings, user: User) -> Admission:
    """Before a byte is written: 403 naming the plan when it has no cloud storage, or
    when the user is over its quota (read-only). `landing` checks again, exactly."""
    require_feature(user, Feature.CLOUD_STORAGE)
    limits = limits_for(user.tier, settings=settings)
    used = await quota.used_bytes(session=session, user_id=user.id)
    quota.require_writable(limits=limits, used=used)
    return Admission(limits=limits, used=used)
