"""The grace-period sweep, on a schedule: users whose payment kept failing go back to free."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.billing.service import expire_grace_periods
from app.core.settings import Settings
from app.tiers.effects import DowngradeEffect

logger = logging.getLogger(__name__)

# A grace period ends at most this long before the user's tier follows.
SWEEP_INTERVAL_S = 900.0


async def run_grace_sweep_forever(
    *,
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
    effects: Sequence[DowngradeEffect],
    interval_s: float = SWEEP_INTERVAL_S,
) -> None:
    """The scheduled job (started by the app's lifespan)."""
    while True:
        await asyncio.sleep(interval_s)
        try:
            async with sessionmaker() as session:
                changed = await expire_grace_periods(
                    session=session, settings=settings, effects=effects, now=datetime.now(UTC)
                )
            if changed:
                logger.info("grace periods ended", extra={"users": changed})
        except Exception:  # a failed sweep (the database down, say) must not end the job
            logger.exception("the grace-period sweep failed; trying again at the next one")
