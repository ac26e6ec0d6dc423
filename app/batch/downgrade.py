"""The batch domain's downgrade effect: agents over the plan's limit are disabled, newest first.

Registered in `app.tiers.downgrade.DOWNGRADE_EFFECTS`; billing runs it on every
plan change, under the user's account lock, in the transaction that stores the
new plan. Nothing is deleted: the disabled agents keep their configuration and
run logs, and the user chooses which ones to switch back on within the limit.
"""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession

from app.batch import service
from app.tiers.effects import Restriction
from app.tiers.matrix import TierLimits

logger = logging.getLogger(__name__)

KIND = "batch_agents"


class EnabledAgentsOverLimit:
    """`DowngradeEffect` for the limit on enabled batch agents (local and cloud together)."""

    async def enforce(
        self, *, session: AsyncSession, user_id: uuid.UUID, limits: TierLimits
    ) -> None:
        """Disable the newest enabled agents beyond the plan's limit (none when unlimited)."""
        if limits.batch_agents is None:
            return
        disabled = await service.disable_over_limit(
            session=session, user_id=user_id, limit=limits.batch_agents, now=datetime.now(UTC)
        )
        if disabled:
            logger.info(
                "batch agents over the plan's limit disabled",
                extra={"user_id": str(user_id), "tier": limits.tier.value, "agents": disabled},
            )

    async def describe(
        self, *, session: AsyncSession, user_id: uuid.UUID, limits: TierLimits
    ) -> Restriction | None:
        """Say so while the user has more agents than the plan lets be enabled."""
        limit = limits.batch_agents
        if limit is None:
            return None
        total, enabled = await service.count_agents(session=session, user_id=user_id)
        if total <= limit or enabled == total:
            return None
        disabled = total - enabled
        return Restriction(
            kind=KIND,
            detail=f"{disabled} of your {total} batch agents {'is' if disabled == 1 else 'are'}"
            f" disabled: the {limits.tier.value} plan allows {limit} enabled; upgrade to"
            " enable more",
        )
