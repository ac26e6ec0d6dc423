"""`/billing`: Stripe Checkout, Stripe's customer portal, the user's subscription, and
Stripe's webhook (SPEC §5)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Header, Request

from app.auth.dependencies import CurrentUser
from app.billing import service
from app.billing.dependencies import StripeGatewayDep
from app.billing.schemas import (
    CheckoutCreate,
    CheckoutRead,
    PortalRead,
    SubscriptionRead,
    WebhookAck,
)
from app.core.dependencies import SessionDep, SettingsDep
from app.core.responses import AUTHENTICATED, EVERY_ROUTE, JSON_BODY, error
from app.tiers.dependencies import LIMITED_BY_ADDRESS, DowngradeEffectsDep

router = APIRouter(prefix="/billing", tags=["billing"], responses=EVERY_ROUTE)

_PROVIDER_FAILED = error(502, "Stripe answered with an error; nothing was changed here.")
_NOT_CONFIGURED = error(
    503,
    "Billing is not configured (the detail names the missing settings), Stripe cannot be "
    "reached, or the server is temporarily unavailable.",
)


@router.post(
    "/checkout",
    responses={
        **AUTHENTICATED,
        **JSON_BODY,
        **error(400, "The free plan, the current plan, or seats on a plan without them."),
        **error(
            409,
            "A subscription is live (any status until Stripe ends it: active, trialing, "
            "past due, unpaid, paused, or incomplete while its first payment is pending): "
            "change plans through the billing portal (`POST /billing/portal`).",
        ),
        **_PROVIDER_FAILED,
        **_NOT_CONFIGURED,
    },
)
async def checkout(
    body: CheckoutCreate,
    user: CurrentUser,
    session: SessionDep,
    settings: SettingsDep,
    gateway: StripeGatewayDep,
) -> CheckoutRead:
    """Start a Stripe Checkout for a paid plan; the tier changes when Stripe says it is paid.

    Only without a live subscription: a subscriber changes plans in the portal.
    """
    url = await service.start_checkout(
        session=session,
        settings=settings,
        gateway=gateway,
        user=user,
        tier=body.tier,
        seats=body.seats,
    )
    return CheckoutRead(checkout_url=url)


@router.post(
    "/portal",
    responses={
        **AUTHENTICATED,
        **error(409, "No billing account yet: the user has never started a checkout."),
        **_PROVIDER_FAILED,
        **_NOT_CONFIGURED,
    },
)
async def portal(
    user: CurrentUser,
    session: SessionDep,
    settings: SettingsDep,
    gateway: StripeGatewayDep,
) -> PortalRead:
    """Open Stripe's customer portal: change plans or seats, update the card, see
    invoices, cancel. The tier changes when Stripe's events say so."""
    url = await service.open_portal(session=session, settings=settings, gateway=gateway, user=user)
    return PortalRead(portal_url=url)


@router.get("/subscription", responses={**AUTHENTICATED, **_NOT_CONFIGURED})
async def subscription(
    user: CurrentUser,
    session: SessionDep,
    settings: SettingsDep,
    gateway: StripeGatewayDep,
    effects: DowngradeEffectsDep,
) -> SubscriptionRead:
    """The user's plan, the subscription it comes from, and what the plan restricts."""
    return await service.current_subscription(
        session=session,
        settings=settings,
        gateway=gateway,
        user=user,
        effects=effects,
        now=datetime.now(UTC),
    )


@router.delete(
    "/subscription",
    responses={
        **AUTHENTICATED,
        **error(404, "No subscription gives this account a paid plan."),
        **_PROVIDER_FAILED,
        **_NOT_CONFIGURED,
    },
)
async def cancel(
    user: CurrentUser,
    session: SessionDep,
    settings: SettingsDep,
    gateway: StripeGatewayDep,
    effects: DowngradeEffectsDep,
) -> SubscriptionRead:
    """Cancel at the end of the paid period (through Stripe); the plan stays until then."""
    return await service.cancel_subscription(
        session=session,
        settings=settings,
        gateway=gateway,
        user=user,
        effects=effects,
        now=datetime.now(UTC),
    )


@router.post(
    "/webhook",
    responses={
        **error(400, "Missing or invalid Stripe-Signature, or a body that is not a Stripe event."),
        **error(503, "STRIPE_WEBHOOK_SECRET is not set, or the server is temporarily unavailable."),
    },
    dependencies=[LIMITED_BY_ADDRESS],
)
async def webhook(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    effects: DowngradeEffectsDep,
    stripe_signature: Annotated[str | None, Header(max_length=4096)] = None,
) -> WebhookAck:
    """Stripe's events (no bearer token: the `Stripe-Signature` header is checked).

    Each event applies once; replays, out-of-date and unknown events answer 200
    and change nothing.
    """
    payload = await request.body()
    event = service.verify_event(settings=settings, payload=payload, signature=stripe_signature)
    await service.handle_event(
        session=session, settings=settings, payload=event, effects=effects, now=datetime.now(UTC)
    )
    return WebhookAck()
