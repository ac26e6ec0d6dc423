"""What a user's plan lets them store, and how writes are kept within it exactly.

Records, vector items and backups count together against the plan's storage
quota (`app.tiers.matrix`). Usage is the sum of the sizes of the user's rows,
so it is exact by construction: a row and its bytes are committed together.

Writes of one user take turns: each locks the user's `storage_accounts` row
(`lock_account`) before it reads the usage, checks the quota and commits, so
two concurrent uploads can never both squeeze under the limit. A user over
their quota (after a downgrade) can still read and delete, but every write is
refused until they are back within it.
"""

from __future__ import annotations

import uuid

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from app.storage.exceptions import QuotaExceededError, ReadOnlyStorageError
from app.storage.models import Backup, StorageAccount, StoredRecord, VectorItem
from app.tiers.effects import Restriction
from app.tiers.matrix import TierLimits

_UNITS = ("bytes", "KiB", "MiB", "GiB", "TiB")


def format_bytes(size: int) -> str:
    """`size` for people: "5 GiB", "1.5 MiB", "512 bytes"."""
    value = float(size)
    for unit in _UNITS:
        if value < 1024 or unit == _UNITS[-1]:
            return f"{size} bytes" if unit == "bytes" else f"{value:.3g} {unit}"
        value /= 1024
    raise AssertionError  # the loop always returns


async def used_bytes(*, session: AsyncSession, user_id: uuid.UUID) -> int:
    """Bytes the user stores: records, vector items and backups together."""
    sizes = [
        select(func.coalesce(func.sum(model.size_bytes), 0))
        .where(model.user_id == user_id)
        .scalar_subquery()
        for model in (StoredRecord, VectorItem, Backup)
    ]
    return int(await session.scalar(select(sizes[0] + sizes[1] + sizes[2])) or 0)


async def lock_account(*, session: AsyncSession, user_id: uuid.UUID) -> None:
    """Wait for the user's other writes to commit; hold their turn until this
    transaction ends."""
    await session.execute(insert(StorageAccount).values(user_id=user_id).on_conflict_do_nothing())
    await session.execute(
        select(StorageAccount.user_id).where(StorageAccount.user_id == user_id).with_for_update()
    )


def require_writable(*, limits: TierLimits, used: int) -> None:
    """`ReadOnlyStorageError` (403) if the user is over their plan's quota already."""
    quota = limits.storage_bytes
    if quota is not None and used > quota:
        raise ReadOnlyStorageError(
            f"Storage is read-only: {format_bytes(used)} stored, more than the "
            f"{limits.tier.value} plan's {format_bytes(quota)}; delete some to write again"
        )


def require_room(*, limits: TierLimits, used: int, after: int, arriving: bool = False) -> None:
    """Refuse (403) a write that takes the usage from `used` to `after` bytes, if the
    user is over quota already or would be afterwards.

    `arriving`: `after` counts what has arrived of a body whose size was not
    declared, so the refusal says the write needs at least that much.
    """
    require_writable(limits=limits, used=used)
    quota = limits.storage_bytes
    if quota is not None and after > quota:
        at_least = "at least " if arriving else ""
        raise QuotaExceededError(
            f"Storage quota exceeded: the {limits.tier.value} plan allows "
            f"{format_bytes(quota)}; {format_bytes(used)} is stored and this needs "
            f"{at_least}{format_bytes(after - used)} more"
        )


class StorageReadOnly:
    """The downgrade effect of cloud storage: nothing is deleted or changed; a user
    over the new plan's quota gets read-only storage (every write checks it), which
    `/billing/subscription` reports as a `storage` restriction."""

    async def enforce(
        self, *, session: AsyncSession, user_id: uuid.UUID, limits: TierLimits
    ) -> None:
        """Nothing to store: each write compares the usage with the plan it finds."""

    async def describe(
        self, *, session: AsyncSession, user_id: uuid.UUID, limits: TierLimits
    ) -> Restriction | None:
        quota = limits.storage_bytes
        used = await used_bytes(session=session, user_id=user_id)
        if quota is None or used <= quota:
            return None
        return Restriction(
            kind="storage",
            detail=f"Storage is read-only: {format_bytes(used)} stored, more than the "
            f"{limits.tier.value} plan's {format_bytes(quota)}; nothing was deleted, and "
            "deleting some makes it writable again",
        )
