"""The shape of a payment listener: a domain that sells something once (not a plan)
and learns from the webhook that it was paid.

Billing owns the one webhook endpoint and its exactly-once rule; a listener is
called inside the transaction that records the event, so its effects commit
with the event id or not at all. The marketplace's paid installs
(`app.plugins.revenue.PluginSales`) are the one listener today; `app.main`
registers it.
"""

from __future__ import annotations

import uuid
from typing import Protocol

from sqlalchemy.ext.asyncio import AsyncSession

from app.billing.events import PaymentOutcome


class PaymentListener(Protocol):
    async def payment_settled(
        self, *, session: AsyncSession, outcome: PaymentOutcome, payer_id: uuid.UUID | None
    ) -> None:
        """Act on a PaymentIntent's outcome; `payer_id` is the user whose Stripe customer
        it charged (None when the customer is not one of ours)."""
