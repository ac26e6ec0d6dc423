"""Billing: checkout, the customer portal, the user's subscription, cancellation, and
Stripe's webhook events.

The user's tier follows their subscriptions, and only webhook events (and the
grace-period sweep) move it:

- a subscription gives its tier while `active` or `trialing`, and while
  `past_due` or `unpaid` until `GRACE_PERIOD` has passed since paying first
  failed; with several live subscriptions the highest tier wins;
- `canceled` (deleted) or `incomplete` gives nothing: the user is back on free.

A user has one subscription Stripe bills: checkout is refused (409) while one is
live (`events.is_live`: until Stripe ends it). Plan and seat changes go through
Stripe's customer portal, which changes that subscription; its
`customer.subscription.updated` moves the tier and seats like any other event.

Every event is applied exactly once: its id is inserted into `billing_events`
in the same transaction as its effects, so a replay (or a second delivery
racing the first) finds the id and changes nothing. Events that arrive out of
order never roll a subscription back (`events.supersedes`). A user's billing
changes take a lock on their account row, so they apply one at a time.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import stripe
from sqlalchemy import delete, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth import service as auth_service
from app.auth.models import User
from app.billing import events
from app.billing.exceptions import (
    AlreadySubscribedError,
    BillingNotConfiguredError,
    CheckoutRefusedError,
    InvalidWebhookError,
    NoBillingAccountError,
    NoSubscriptionError,
)
from app.billing.models import BillingCustomer, ProcessedEvent, Subscription
from app.billing.schemas import RestrictionRead, SubscriptionRead
from app.billing.stripe_api import StripeGateway
from app.core.settings import Settings
from app.tiers.downgrade import DowngradeEffect, enforce_plan, restrictions
from app.tiers.matrix import Tier, best_tier, is_lower, is_paid, limits_for

logger = logging.getLogger(__name__)

# How long a subscription whose payment failed keeps its tier: Stripe retries the
# card meanwhile (Smart Retries); an invoice paid within it changes nothing for the user.
GRACE_PERIOD = timedelta(days=7)
# Applied event ids are kept this long (Stripe retries a delivery for up to 3 days).
EVENT_RETENTION = timedelta(days=30)


@dataclass(frozen=True, slots=True)
class _Context:
    """What moving a user's plan needs: the transaction, the settings, the downgrade
    effects, and the time it is."""

    session: AsyncSession
    settings: Settings
    effects: Sequence[DowngradeEffect]
    now: datetime


def _as_utc(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _from_stripe_time(created: int) -> datetime:
    return datetime.fromtimestamp(created, UTC)


# -- configuration -----------------------------------------------------------------------


def _price_setting(tier: Tier) -> str:
    return f"STRIPE_PRICE_{tier.name}"


def _price_of(settings: Settings, tier: Tier) -> str | None:
    prices = {
        Tier.PRO: settings.stripe_price_pro,
        Tier.POWER: settings.stripe_price_power,
        Tier.TEAM: settings.stripe_price_team,
    }
    return prices.get(tier)


def require_billing(settings: Settings, gateway: StripeGateway | None) -> StripeGateway:
    """The gateway, or 503 naming STRIPE_SECRET_KEY when billing is off."""
    if gateway is None or settings.stripe_secret_key is None:
        raise BillingNotConfiguredError(["STRIPE_SECRET_KEY"])
    return gateway


def _require_checkout_settings(settings: Settings, tier: Tier) -> tuple[str, str, str]:
    """The price, success and cancel URLs for a checkout of `tier`, or 503 naming
    every missing setting."""
    price, success, cancel = (
        _price_of(settings, tier),
        settings.billing_success_url,
        settings.billing_cancel_url,
    )
    if settings.stripe_secret_key is None or not (price and success and cancel):
        named = {
            "STRIPE_SECRET_KEY": settings.stripe_secret_key,
            _price_setting(tier): price,
            "BILLING_SUCCESS_URL": success,
            "BILLING_CANCEL_URL": cancel,
        }
        raise BillingNotConfiguredError([name for name, value in named.items() if not value])
    return price, success, cancel


def _require_portal_settings(settings: Settings) -> str:
    """Where the portal sends the user back (BILLING_PORTAL_RETURN_URL, else
    BILLING_SUCCESS_URL), or 503 naming every missing setting."""
    return_url = settings.billing_portal_return_url or settings.billing_success_url
    if settings.stripe_secret_key is None or not return_url:
        named = {
            "STRIPE_SECRET_KEY": settings.stripe_secret_key,
            "BILLING_PORTAL_RETURN_URL": return_url,
        }
        raise BillingNotConfiguredError([name for name, value in named.items() if not value])
    return return_url


# -- checkout ----------------------------------------------------------------------------


async def _stored_customer_id(*, session: AsyncSession, user_id: uuid.UUID) -> str | None:
    return await session.scalar(
        select(BillingCustomer.stripe_customer_id).where(BillingCustomer.user_id == user_id)
    )


async def _customer_id(*, session: AsyncSession, gateway: StripeGateway, user: User) -> str:
    """The user's Stripe customer, created at Stripe (and stored) the first time."""
    existing = await _stored_customer_id(session=session, user_id=user.id)
    # No connection is held while Stripe is called.
    await session.commit()
    if existing is not None:
        return existing
    created = await gateway.create_customer(user_id=user.id, email=user.email)
    # Two first checkouts at once got the same customer (the idempotency key): one row wins.
    await session.execute(
        insert(BillingCustomer)
        .values(user_id=user.id, stripe_customer_id=created)
        .on_conflict_do_nothing()
    )
    stored = await _stored_customer_id(session=session, user_id=user.id)
    await session.commit()
    return stored or created


async def _live_subscription(*, session: AsyncSession, user_id: uuid.UUID) -> Subscription | None:
    """The user's subscription Stripe still bills (the best, if there were several)."""
    rows = await _subscriptions(session=session, user_id=user_id)
    return _best([row for row in rows if events.is_live(row.status)])


async def start_checkout(
    *,
    session: AsyncSession,
    settings: Settings,
    gateway: StripeGateway | None,
    user: User,
    tier: Tier,
    seats: int | None,
) -> str:
    """A Stripe Checkout URL for `tier`: 400 for free or the user's current tier,
    409 while a subscription is live (plan changes go through the portal).

    503 first when billing is not configured for `tier`, naming what is missing.
    Stripe is called only once every check has passed.
    """
    if not is_paid(tier):
        require_billing(settings, gateway)
        raise CheckoutRefusedError("The free plan needs no checkout")
    price, success_url, cancel_url = _require_checkout_settings(settings, tier)
    stripe_gateway = require_billing(settings, gateway)
    if Tier(user.tier) is tier:
        raise CheckoutRefusedError(f"You are already on the {tier.value} plan")
    if seats not in (None, 1) and not limits_for(tier, settings=settings).per_seat:
        raise CheckoutRefusedError(f"The {tier.value} plan has no seats to choose")
    live = await _live_subscription(session=session, user_id=user.id)
    if live is not None:
        raise AlreadySubscribedError(live.tier)
    customer_id = await _customer_id(session=session, gateway=stripe_gateway, user=user)
    return await stripe_gateway.create_checkout_session(
        user_id=user.id,
        customer_id=customer_id,
        tier=tier,
        price_id=price,
        seats=seats or 1,
        success_url=success_url,
        cancel_url=cancel_url,
    )


async def open_portal(
    *,
    session: AsyncSession,
    settings: Settings,
    gateway: StripeGateway | None,
    user: User,
) -> str:
    """A Stripe customer portal URL for the user's customer, where they change plans
    and seats, update their card, see invoices or cancel; Stripe's webhook events
    then move the plan. 409 when the user has no Stripe customer yet (never
    checked out): the portal is only for customers.

    503 first when billing is not configured, naming what is missing.
    """
    return_url = _require_portal_settings(settings)
    stripe_gateway = require_billing(settings, gateway)
    customer_id = await _stored_customer_id(session=session, user_id=user.id)
    await session.commit()  # no connection is held while Stripe is called
    if customer_id is None:
        raise NoBillingAccountError
    return await stripe_gateway.create_portal_session(
        customer_id=customer_id, return_url=return_url
    )


# -- the subscription --------------------------------------------------------------------


def _grace_end(row: Subscription) -> datetime | None:
    if row.status in events.UNPAID_STATUSES and row.payment_failed_at is not None:
        return _as_utc(row.payment_failed_at) + GRACE_PERIOD
    return None


def _grants_tier(row: Subscription, now: datetime) -> bool:
    if row.status in events.ACTIVE_STATUSES:
        return True
    grace_end = _grace_end(row)
    return grace_end is not None and now < grace_end


async def _subscriptions(*, session: AsyncSession, user_id: uuid.UUID) -> list[Subscription]:
    """The user's subscriptions, newest state first."""
    rows = await session.scalars(
        select(Subscription)
        .where(Subscription.user_id == user_id)
        .order_by(Subscription.state_at.desc())
    )
    return list(rows)


def _giving_subscription(rows: Sequence[Subscription], now: datetime) -> Subscription | None:
    """The subscription the user's tier comes from: the best one that gives a tier."""
    return _best([row for row in rows if _grants_tier(row, now)])


def _best(rows: Sequence[Subscription]) -> Subscription | None:
    """The subscription with the highest tier among `rows` (the first of equals), or None."""
    if not rows:
        return None
    tier = best_tier(row.tier for row in rows)
    return next(row for row in rows if row.tier == tier)


async def current_subscription(
    *,
    session: AsyncSession,
    settings: Settings,
    gateway: StripeGateway | None,
    user: User,
    effects: Sequence[DowngradeEffect],
    now: datetime,
) -> SubscriptionRead:
    """What `GET /billing/subscription` says: the tier stored with the account, the
    subscription it comes from (else the latest one), and what the plan restricts."""
    require_billing(settings, gateway)
    rows = await _subscriptions(session=session, user_id=user.id)
    shown = _giving_subscription(rows, now) or (rows[0] if rows else None)
    limits = limits_for(user.tier, settings=settings)
    restricted = await restrictions(
        session=session, user_id=user.id, limits=limits, effects=effects
    )
    return SubscriptionRead(
        tier=Tier(user.tier),
        status=shown.status if shown else "none",
        current_period_end=shown.current_period_end if shown else None,
        cancel_at_period_end=shown.cancel_at_period_end if shown else False,
        seats=user.seats,
        grace_period_end=_grace_end(shown) if shown else None,
        restrictions=[RestrictionRead(kind=r.kind, detail=r.detail) for r in restricted],
    )


async def cancel_subscription(
    *,
    session: AsyncSession,
    settings: Settings,
    gateway: StripeGateway | None,
    user: User,
    effects: Sequence[DowngradeEffect],
    now: datetime,
) -> SubscriptionRead:
    """Cancel every subscription that gives the user a tier, at the end of its period.

    The tier stays until then; Stripe's `customer.subscription.deleted` brings the
    user back to free. Stripe is asked first: if it fails, nothing is stored.
    """
    stripe_gateway = require_billing(settings, gateway)
    rows = await _subscriptions(session=session, user_id=user.id)
    giving = [row.stripe_subscription_id for row in rows if _grants_tier(row, now)]
    await session.commit()  # no connection is held while Stripe is called
    if not giving:
        raise NoSubscriptionError
    for subscription_id in giving:
        await stripe_gateway.cancel_at_period_end(subscription_id=subscription_id)
        row = await session.get(Subscription, subscription_id, with_for_update=True)
        if row is not None:
            row.cancel_at_period_end = True
        await session.commit()
    logger.info("subscription set to cancel at period end", extra={"user_id": str(user.id)})
    return await current_subscription(
        session=session, settings=settings, gateway=gateway, user=user, effects=effects, now=now
    )


# -- the plan ------------------------------------------------------------------------------


async def _refresh_plan(ctx: _Context, user_id: uuid.UUID, plan: auth_service.Plan) -> bool:
    """Store the tier the user's subscriptions give now (the caller holds the account
    lock); on a change, let every downgrade effect apply. True when it changed."""
    session = ctx.session
    giving = _giving_subscription(await _subscriptions(session=session, user_id=user_id), ctx.now)
    tier = Tier(giving.tier) if giving else Tier.FREE
    limits = limits_for(tier, settings=ctx.settings)
    seats = giving.seats if giving and limits.per_seat else 1
    if (tier.value, seats) == (plan.tier, plan.seats):
        return False
    await auth_service.set_plan(session=session, user_id=user_id, tier=tier, seats=seats)
    await enforce_plan(session=session, user_id=user_id, limits=limits, effects=ctx.effects)
    logger.info(
        "plan changed",
        extra={
            "user_id": str(user_id),
            "tier": tier.value,
            "seats": seats,
            "downgrade": is_lower(tier, plan.tier),
        },
    )
    return True


def _track_payment(row: Subscription, created: int) -> None:
    """Start the grace period when paying first fails; end it once paid."""
    if row.status in events.UNPAID_STATUSES:
        if row.payment_failed_at is None:
            row.payment_failed_at = _from_stripe_time(created)
    else:
        row.payment_failed_at = None


# -- webhook events ----------------------------------------------------------------------


def verify_event(*, settings: Settings, payload: bytes, signature: str | None) -> dict[str, object]:
    """The event Stripe signed, checked with STRIPE_WEBHOOK_SECRET and the library's
    timestamp tolerance; 400 (`InvalidWebhookError`) for anything else."""
    if settings.stripe_webhook_secret is None:
        raise BillingNotConfiguredError(["STRIPE_WEBHOOK_SECRET"])
    secret = settings.stripe_webhook_secret.get_secret_value()
    try:
        stripe.WebhookSignature.verify_header(
            payload, signature, secret, stripe.Webhook.DEFAULT_TOLERANCE
        )
    except stripe.SignatureVerificationError as exc:
        raise InvalidWebhookError("Invalid or missing Stripe-Signature") from exc
    except UnicodeDecodeError as exc:
        raise InvalidWebhookError("The webhook body is not UTF-8") from exc
    try:
        event = json.loads(payload)
    except ValueError as exc:
        raise InvalidWebhookError("The webhook body is not JSON") from exc
    if not isinstance(event, dict):
        raise InvalidWebhookError("The webhook body is not a Stripe event")
    return event


async def _claim_event(*, session: AsyncSession, event: events.EventEnvelope) -> bool:
    """Record the event as applied; False if it already was (a replay).

    The insert waits on a concurrent delivery of the same id until that one
    commits (then it conflicts: a replay) or rolls back (then this one applies).
    """
    claimed = await session.scalar(
        insert(ProcessedEvent)
        .values(id=event.id, type=event.type)
        .on_conflict_do_nothing(index_elements=[ProcessedEvent.id])
        .returning(ProcessedEvent.id)
    )
    return claimed is not None


async def _owner(
    *, session: AsyncSession, customer_id: str | None, user_id: uuid.UUID | None
) -> uuid.UUID | None:
    """Whose subscription this is: the user whose Stripe customer it is, else the user
    named in the metadata this server wrote at checkout."""
    if customer_id is not None:
        owner = await session.scalar(
            select(BillingCustomer.user_id).where(BillingCustomer.stripe_customer_id == customer_id)
        )
        if owner is not None:
            return owner
    return user_id


def _is_newer(row: Subscription, *, created: int, status: str, period_end: datetime | None) -> bool:
    return events.supersedes(
        stored_at=row.state_at,
        stored_status=row.status,
        stored_period_end=row.current_period_end,
        event_created=created,
        status=status,
        period_end=period_end,
    )


async def _settle(ctx: _Context, row: Subscription, created: int, plan: auth_service.Plan) -> None:
    """After an event changed `row`: the grace period, then the user's plan."""
    _track_payment(row, created)
    await ctx.session.flush()
    await _refresh_plan(ctx, row.user_id, plan)


async def _apply_state(ctx: _Context, state: events.SubscriptionState, created: int) -> None:
    session = ctx.session
    owner = await _owner(session=session, customer_id=state.customer_id, user_id=state.user_id)
    plan = await auth_service.lock_plan(session=session, user_id=owner) if owner else None
    if owner is None or plan is None:
        logger.warning("stripe event for a subscription of no known user; ignored")
        return
    row = await session.get(Subscription, state.subscription_id, with_for_update=True)
    if row is None:
        if state.tier is None:
            logger.warning("stripe subscription with a price of no known tier; ignored")
            return
        row = Subscription(
            stripe_subscription_id=state.subscription_id,
            user_id=owner,
            tier=state.tier.value,
            seats=state.seats or 1,
            status=state.status,
            current_period_end=state.current_period_end,
            cancel_at_period_end=bool(state.cancel_at_period_end),
            state_at=created,
        )
        session.add(row)
    elif row.user_id != owner:
        logger.warning("stripe event names another user's subscription; ignored")
        return
    elif not _is_newer(
        row, created=created, status=state.status, period_end=state.current_period_end
    ):
        logger.info("out-of-date stripe event ignored", extra={"status": state.status})
        return
    else:
        row.status = state.status
        row.state_at = created
        row.tier = state.tier.value if state.tier else row.tier
        row.seats = state.seats or row.seats
        row.current_period_end = state.current_period_end or row.current_period_end
        if state.cancel_at_period_end is not None:
            row.cancel_at_period_end = state.cancel_at_period_end
    await _settle(ctx, row, created, plan)


async def _apply_invoice(ctx: _Context, outcome: events.InvoiceOutcome, created: int) -> None:
    session = ctx.session
    owner = await session.scalar(
        select(Subscription.user_id).where(
            Subscription.stripe_subscription_id == outcome.subscription_id
        )
    )
    plan = await auth_service.lock_plan(session=session, user_id=owner) if owner else None
    row = await session.get(Subscription, outcome.subscription_id, with_for_update=True)
    if owner is None or plan is None or row is None:
        logger.info("invoice for a subscription not seen yet; its own events will follow")
        return
    if outcome.paid:
        status = "active"
    elif row.status in events.ACTIVE_STATUSES:
        status = "past_due"
    else:
        status = row.status  # already unpaid, incomplete or over
    if not _is_newer(row, created=created, status=status, period_end=None):
        logger.info("out-of-date stripe invoice event ignored")
        return
    row.status = status
    row.state_at = created
    await _settle(ctx, row, created, plan)


async def handle_event(
    *,
    session: AsyncSession,
    settings: Settings,
    payload: dict[str, object],
    effects: Sequence[DowngradeEffect],
    now: datetime,
) -> None:
    """Apply one verified Stripe event exactly once.

    The event id and the event's effects commit together or not at all; a
    replay changes nothing. Unknown event types are recorded and ignored.
    """
    ctx = _Context(session=session, settings=settings, effects=effects, now=now)
    try:
        event = events.parse_envelope(payload)
        if not await _claim_event(session=session, event=event):
            await session.rollback()
            logger.info("stripe event already applied; ignored", extra={"event_type": event.type})
            return
        if event.type == events.CHECKOUT_COMPLETED:
            state = events.checkout_state(event.object)
        elif event.type in events.SUBSCRIPTION_EVENTS:
            state = events.subscription_state(event.object, prices=events.price_tiers(settings))
        elif event.type in {events.INVOICE_PAID, events.INVOICE_PAYMENT_FAILED}:
            state = None
            outcome = events.invoice_outcome(event.object, paid=event.type == events.INVOICE_PAID)
            if outcome is not None:
                await _apply_invoice(ctx, outcome, event.created)
        else:
            state = None
        if state is not None:
            await _apply_state(ctx, state, event.created)
    except events.MalformedEventError as exc:
        await session.rollback()
        raise InvalidWebhookError(f"Malformed Stripe event: {exc}") from exc
    await session.commit()


# -- the grace-period sweep ----------------------------------------------------------------


async def expire_grace_periods(
    *,
    session: AsyncSession,
    settings: Settings,
    effects: Sequence[DowngradeEffect],
    now: datetime,
) -> int:
    """Move users whose grace period has run out back to what they still pay for
    (free, usually), and forget applied event ids past `EVENT_RETENTION`.

    Returns how many users' plans changed. Idempotent: several instances may run it.
    """
    overdue = await session.scalars(
        select(Subscription.user_id)
        .where(
            Subscription.status.in_(events.UNPAID_STATUSES),
            Subscription.payment_failed_at <= now - GRACE_PERIOD,
        )
        .distinct()
    )
    ctx = _Context(session=session, settings=settings, effects=effects, now=now)
    changed = 0
    for user_id in list(overdue):
        plan = await auth_service.lock_plan(session=session, user_id=user_id)
        if plan is not None and await _refresh_plan(ctx, user_id, plan):
            changed += 1
        await session.commit()
    await session.execute(
        delete(ProcessedEvent).where(ProcessedEvent.created_at < now - EVENT_RETENTION)
    )
    await session.commit()
    return changed
