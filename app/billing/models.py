"""Stripe customers, subscriptions and the webhook events already applied."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Integer,
    String,
)
from sqlalchemy.orm import Mapped, mapped_column

from app.core.database import Base, TimestampMixin
from app.tiers.matrix import Tier


class BillingCustomer(TimestampMixin, Base):
    """The user's Stripe customer: created once, at their first checkout."""

    __tablename__ = "billing_customers"

    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    stripe_customer_id: Mapped[str] = mapped_column(String(255), unique=True, nullable=False)


class Subscription(TimestampMixin, Base):
    """One Stripe subscription as the webhook events have described it so far.

    `state_at` is Stripe's `created` time of the newest event applied to this
    row: an event created earlier is out of date and changes nothing.
    """

    __tablename__ = "billing_subscriptions"
    __table_args__ = (
        CheckConstraint(
            "tier IN (" + ", ".join(f"'{tier.value}'" for tier in Tier) + ")", name="tier"
        ),
        CheckConstraint("seats >= 1", name="seats"),
    )

    stripe_subscription_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), index=True, nullable=False
    )
    tier: Mapped[str] = mapped_column(String(16), nullable=False)
    seats: Mapped[int] = mapped_column(Integer, nullable=False, default=1)
    # Stripe's status: incomplete, active, trialing, past_due, unpaid, canceled, …
    status: Mapped[str] = mapped_column(String(32), nullable=False)
    current_period_end: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    cancel_at_period_end: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    # When paying first failed (a failed invoice, or Stripe saying past_due/unpaid);
    # cleared once an invoice is paid. The grace period runs from here.
    payment_failed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    state_at: Mapped[int] = mapped_column(BigInteger, nullable=False)


class ProcessedEvent(TimestampMixin, Base):
    """A Stripe event already applied: its id is the primary key, so each applies once."""

    __tablename__ = "billing_events"

    id: Mapped[str] = mapped_column(String(255), primary_key=True)
    type: Mapped[str] = mapped_column(String(255), nullable=False)
