"""The shape of a downgrade effect: what a domain does, and says, when a plan limits its data.

Kept apart from the registry in `app.tiers.downgrade`, which imports the domains'
effects: a domain implements `DowngradeEffect` and returns `Restriction`s with
no import of the registry, so neither imports the other in a circle.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Protocol

from sqlalchemy.ext.asyncio import AsyncSession

from app.tiers.matrix import TierLimits


@dataclass(frozen=True, slots=True)
class Restriction:
    """Something the user's data exceeds on their plan, and what was done about it."""

    kind: str  # "batch_agents", "storage"
    detail: str  # "3 of your 5 batch agents are disabled: the free plan allows 2 enabled"


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
