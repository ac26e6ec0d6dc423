"""What a plan change does to what the user already has: never deletes, only restricts.

Each domain whose data a plan limits registers a `DowngradeEffect` in
`DOWNGRADE_EFFECTS`. When billing changes a user's plan it calls `enforce_plan`,
and each effect brings the user's data within the new limits without deleting
any of it: batch agents over the limit are disabled (newest first), storage
over its quota becomes read-only. `GET /billing/subscription` lists what each
effect reports as `restrictions`.

Batch agents (`app.batch.downgrade.EnabledAgentsOverLimit`) and cloud storage
(`app.storage.quota.StorageReadOnly`) register theirs here. The effects' shape is
in `app.tiers.effects`, so a domain's effect needs no import of this registry.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncSession

from app.batch.downgrade import EnabledAgentsOverLimit
from app.storage.quota import StorageReadOnly
from app.tiers.effects import DowngradeEffect, Restriction
from app.tiers.matrix import TierLimits

__all__ = [
    "DOWNGRADE_EFFECTS",
    "DowngradeEffect",
    "Restriction",
    "enforce_plan",
    "restrictions",
]

# Every domain's effect, in the order they apply.
DOWNGRADE_EFFECTS: tuple[DowngradeEffect, ...] = (EnabledAgentsOverLimit(), StorageReadOnly())


async def enforce_plan(
    *,
    session: AsyncSession,
    user_id: uuid.UUID,
    limits: TierLimits,
    effects: Sequence[DowngradeEffect],
) -> None:
    """Apply every effect for the user's new plan."""
    for effect in effects:
        await effect.enforce(session=session, user_id=user_id, limits=limits)


async def restrictions(
    *,
    session: AsyncSession,
    user_id: uuid.UUID,
    limits: TierLimits,
    effects: Sequence[DowngradeEffect],
) -> list[Restriction]:
    """What the user's plan restricts now, one entry per effect that reports something."""
    found = []
    for effect in effects:
        restriction = await effect.describe(session=session, user_id=user_id, limits=limits)
        if restriction is not None:
            found.append(restriction)
    return found
