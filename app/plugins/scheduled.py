"""Authors' payouts, on a schedule: shares not transferred yet go to their Connect accounts."""

from __future__ import annotations

import asyncio
import logging

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.billing.stripe_api import StripeGateway
from app.plugins.revenue import pay_out_pending

logger = logging.getLogger(__name__)


async def run_payouts_forever(
    *,
    sessionmaker: async_sessionmaker[AsyncSession],
    gateway: StripeGateway,
    interval_s: float,
) -> None:
    """The scheduled job (started by the app's lifespan when Stripe is configured)."""
    while True:
        try:
            async with sessionmaker() as session:
                paid = await pay_out_pending(session=session, gateway=gateway)
            if paid:
                logger.info("plugin payouts transferred", extra={"count": paid})
        except Exception:  # a failed pass (Stripe or the database down) must not end the job
            logger.exception("plugin payouts failed; trying again at the next pass")
        await asyncio.sleep(interval_s)
