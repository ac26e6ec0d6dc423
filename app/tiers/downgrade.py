"""What a plan change does to what the user already has: never deletes, only restricts.

Each domain whose data a plan limits registers a `DowngradeEffect` in
`DOWNGRADE_EFFECTS`. When billing changes a user's plan it calls `enforce_plan`,
and each effect brings the user's data within the new limits without deleting
any of it: batch agents over the limit are disabled (newest first), storage
over its quota becomes read-only. `GET /billing/subscription` lists what each
effect reports as `restrictions`.

Today no domain registers one: batch agents (issue 12) and cloud storage
(issue 14) do not exist yet, so a downgrade changes the tier, the request rate
limit and the features (`require_feature`), and nothing else.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from sqlalchemy.ext.asyncio import AsyncSession

from app.tiers.matrix import TierLimits


@dataclass(frozen=True, slots=True)
class Restriction:
    """Something the user's data exceeds on their plan, and what was done about it."""

    kind: str  # "batch_agents", "storage"
    detail: str  # "3 agents disabled (newest first): the free plan allows 2 enabled"


class DowngradeEffect(Protocol):
    """One domain's reaction to a plan's limits; runs in billing's transaction."""

    async def enforce(
        self, *, session: AsyncSession, user_id: uuid.UUID, limits: TierLimits
    ) -> None:
        """Bring the user's data within `limits`, disabling rather than deleting."""

    async def describe(
        self, *, session: AsyncSession, user_id: uuid.UUID, limits: TierLimits
    ) -> Restriction | None:
        """What is restricted now because of `limits`, if anything."""


# Issue 12 adds batch agents, issue 14 storage.
DOWNGRADE_EFFECTS: tuple[DowngradeEffect, ...] = ()


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
