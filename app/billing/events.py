"""Stripe webhook events, read into what billing acts on, and the rule for their order.

Pure functions, no I/O: the parsing of the event types billing handles (both
the current API shape, with periods on subscription items and an invoice's
subscription under `parent`, and the older one), and `supersedes`, which
decides whether an event is newer than the state already stored.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from app.core.settings import Settings
from app.tiers.matrix import Tier, is_paid

CHECKOUT_COMPLETED = "checkout.session.completed"
SUBSCRIPTION_EVENTS = frozenset(
    {
        "customer.subscription.created",
        "customer.subscription.updated",
        "customer.subscription.deleted",
    }
)
INVOICE_PAID = "invoice.paid"
INVOICE_PAYMENT_FAILED = "invoice.payment_failed"

# Statuses in which a subscription gives its tier (past_due/unpaid: until the grace ends).
ACTIVE_STATUSES = frozenset({"active", "trialing"})
UNPAID_STATUSES = frozenset({"past_due", "unpaid"})
# A subscription in one of these is over for good: Stripe never revives it.
FINAL_STATUSES = frozenset({"canceled", "incomplete_expired"})


class MalformedEventError(ValueError):
    """A signed event that lacks what its type must carry."""


class _Loose(BaseModel):
    model_config = ConfigDict(extra="ignore")


class EventEnvelope(_Loose):
    id: str
    type: str
    created: int
    data: dict[str, Any]

    @property
    def object(self) -> dict[str, Any]:
        obj = self.data.get("object")
        if not isinstance(obj, dict):
            msg = "the event has no data.object"
            raise MalformedEventError(msg)
        return obj


@dataclass(frozen=True, slots=True)
class SubscriptionState:
    """A subscription as one event describes it; None where the event does not say."""

    subscription_id: str
    customer_id: str | None
    user_id: uuid.UUID | None
    status: str
    tier: Tier | None
    seats: int | None
    current_period_end: datetime | None
    cancel_at_period_end: bool | None


@dataclass(frozen=True, slots=True)
class InvoiceOutcome:
    subscription_id: str
    customer_id: str | None
    paid: bool


def _user_id(*candidates: object) -> uuid.UUID | None:
    for candidate in candidates:
        if isinstance(candidate, str):
            try:
                return uuid.UUID(candidate)
            except ValueError:
                continue
    return None


def _id_of(value: object) -> str | None:
    """An expandable field: an id, or the expanded object carrying it."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and isinstance(value.get("id"), str):
        return str(value["id"])
    return None


def _metadata(obj: dict[str, Any]) -> dict[str, Any]:
    metadata = obj.get("metadata")
    return metadata if isinstance(metadata, dict) else {}


def _paid_tier(value: object) -> Tier | None:
    try:
        tier = Tier(str(value))
    except ValueError:
        return None
    return tier if is_paid(tier) else None


def _seats(value: object) -> int | None:
    try:
        seats = int(str(value))
    except ValueError:
        return None
    return seats if seats >= 1 else None


def _timestamp(value: object) -> datetime | None:
    return datetime.fromtimestamp(value, UTC) if isinstance(value, int) else None


def price_tiers(settings: Settings) -> dict[str, Tier]:
    """The configured Stripe prices and the tier each one buys."""
    prices = {
        Tier.PRO: settings.stripe_price_pro,
        Tier.POWER: settings.stripe_price_power,
        Tier.TEAM: settings.stripe_price_team,
    }
    return {price: tier for tier, price in prices.items() if price}


def _first_item(subscription: dict[str, Any]) -> dict[str, Any]:
    items = subscription.get("items")
    data = items.get("data") if isinstance(items, dict) else None
    if isinstance(data, list) and data and isinstance(data[0], dict):
        return data[0]
    return {}


def subscription_state(obj: dict[str, Any], *, prices: dict[str, Tier]) -> SubscriptionState:
    """A `subscription` object. The tier is the configured tier of its price, else the
    one checkout wrote into its metadata."""
    subscription_id, status = obj.get("id"), obj.get("status")
    if not isinstance(subscription_id, str) or not isinstance(status, str):
        msg = "a subscription without id or status"
        raise MalformedEventError(msg)
    item, metadata = _first_item(obj), _metadata(obj)
    price_id = _id_of(item.get("price"))
    tier = prices.get(price_id or "") or _paid_tier(metadata.get("tier"))
    period_end = item.get("current_period_end", obj.get("current_period_end"))
    cancel = obj.get("cancel_at_period_end")
    return SubscriptionState(
        subscription_id=subscription_id,
        customer_id=_id_of(obj.get("customer")),
        user_id=_user_id(metadata.get("user_id")),
        status=status,
        tier=tier,
        seats=_seats(item.get("quantity", metadata.get("seats"))),
        current_period_end=_timestamp(period_end),
        cancel_at_period_end=cancel if isinstance(cancel, bool) else None,
    )


def checkout_state(obj: dict[str, Any]) -> SubscriptionState | None:
    """A completed Checkout Session in subscription mode (None for other modes).

    Paid (or free of charge): the subscription is active from now on; a payment
    still pending (bank debits) leaves it incomplete until `invoice.paid`.
    """
    subscription_id = _id_of(obj.get("subscription"))
    if obj.get("mode") != "subscription" or subscription_id is None:
        return None
    metadata = _metadata(obj)
    paid = obj.get("payment_status") in {"paid", "no_payment_required"}
    return SubscriptionState(
        subscription_id=subscription_id,
        customer_id=_id_of(obj.get("customer")),
        user_id=_user_id(obj.get("client_reference_id"), metadata.get("user_id")),
        status="active" if paid else "incomplete",
        tier=_paid_tier(metadata.get("tier")),
        seats=_seats(metadata.get("seats")),
        current_period_end=None,
        cancel_at_period_end=None,
    )


def invoice_outcome(obj: dict[str, Any], *, paid: bool) -> InvoiceOutcome | None:
    """An invoice of a subscription (None for one-off invoices)."""
    parent = obj.get("parent")
    details = parent.get("subscription_details") if isinstance(parent, dict) else None
    subscription = details.get("subscription") if isinstance(details, dict) else None
    subscription_id = _id_of(subscription) or _id_of(obj.get("subscription"))
    if subscription_id is None:
        return None
    return InvoiceOutcome(
        subscription_id=subscription_id, customer_id=_id_of(obj.get("customer")), paid=paid
    )


def parse_envelope(payload: dict[str, Any]) -> EventEnvelope:
    try:
        return EventEnvelope.model_validate(payload)
    except ValidationError as exc:
        msg = "the event lacks id, type, created or data"
        raise MalformedEventError(msg) from exc


def is_live(status: str) -> bool:
    """Whether Stripe still holds the subscription and may bill it: every status but the
    final ones (`active`, `trialing`, `past_due`, `unpaid`, `paused`, and `incomplete`,
    whose first payment may still go through). A second subscription would bill
    alongside it, so plan changes go through the customer portal instead."""
    return status not in FINAL_STATUSES


def _progress(status: str) -> int:
    """How far along its life a status is: incomplete, then running, then over."""
    if status in FINAL_STATUSES:
        return 2
    return 0 if status == "incomplete" else 1


def supersedes(
    *,
    stored_at: int,
    stored_status: str,
    stored_period_end: datetime | None,
    event_created: int,
    status: str,
    period_end: datetime | None,
) -> bool:
    """Whether an event (created at `event_created`, saying `status` and `period_end`)
    is newer than what is stored, so applying it can never roll a subscription back.

    An ended subscription stays ended; an older billing period never replaces a
    newer one; otherwise the later event wins, and of two created in the same
    second (Stripe's timestamps are whole seconds) the one further along.
    """
    if _progress(stored_status) == 2 and _progress(status) < 2:
        return False
    if period_end and stored_period_end and period_end < stored_period_end:
        return False
    if event_created != stored_at:
        return event_created > stored_at
    return _progress(status) >= _progress(stored_status)
