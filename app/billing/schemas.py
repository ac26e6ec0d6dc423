"""Request and response bodies of the billing endpoints."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from app.tiers.matrix import Tier

MAX_SEATS = 1000


class CheckoutCreate(BaseModel):
    tier: Tier
    seats: int | None = Field(
        default=None,
        ge=1,
        le=MAX_SEATS,
        description="Seats on the team plan (default 1); other plans have one.",
    )


class CheckoutRead(BaseModel):
    checkout_url: str = Field(description="Stripe Checkout: send the user there to pay.")


class PortalRead(BaseModel):
    portal_url: str = Field(
        description="Stripe's customer portal: send the user there to change plans or seats, "
        "update their payment method, see invoices, or cancel."
    )


class RestrictionRead(BaseModel):
    kind: str = Field(description="What is restricted: `batch_agents`, `storage`, ….")
    detail: str


class SubscriptionRead(BaseModel):
    tier: Tier
    status: str = Field(
        description="Stripe's status of the subscription that gives the tier (`active`, "
        "`trialing`, `past_due`, `unpaid`, `incomplete`, `canceled`, …), or `none`."
    )
    current_period_end: datetime | None
    cancel_at_period_end: bool
    seats: int
    grace_period_end: datetime | None = Field(
        description="While a payment is failing: when the tier falls back to free unless "
        "an invoice is paid by then."
    )
    restrictions: list[RestrictionRead] = Field(
        description="What the plan's limits restrict (after a downgrade: disabled agents, "
        "read-only storage); nothing is ever deleted."
    )


class WebhookAck(BaseModel):
    received: Literal[True] = True
