"""`POST /billing/portal` (Stripe's customer portal), and the plan changes made there.

The portal itself is Stripe's page; what the server sees of a change made there
is the signed `customer.subscription.updated` with the subscription's new price
and quantity, built here by the fake Stripe exactly as it would send it.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from app.core.settings import Settings
from app.main import create_app
from tests.billing.conftest import (
    ExampleAgents,
    checkout_session,
    deliver,
    register,
    rows,
    subscribe,
    tier_of,
)
from tests.billing.fake_stripe import PRICES, FakeStripe, billing_settings

PORTAL = "/api/v1/billing/portal"
SUBSCRIPTION = "/api/v1/billing/subscription"
NO_CUSTOMER = {
    "detail": "You have no billing account yet: subscribe through POST "
    "/api/v1/billing/checkout first"
}


async def stored_customer(app: FastAPI) -> str:
    ((customer_id,),) = await rows(app, "SELECT stripe_customer_id FROM billing_customers")
    return str(customer_id)


# -- the portal session -------------------------------------------------------------------


async def test_a_subscriber_gets_a_portal_session_for_their_customer(
    app: FastAPI, client: httpx.AsyncClient, stripe_fake: FakeStripe
) -> None:
    account = await register(client)
    await subscribe(client, stripe_fake, account, "pro")

    response = await client.post(PORTAL, headers=account.auth)

    assert response.status_code == 200, response.text
    (call,) = stripe_fake.calls("/v1/billing_portal/sessions")
    assert call.params == {
        "customer": await stored_customer(app),
        "return_url": "app://billing/portal-return",
    }
    (portal,) = stripe_fake.portal_sessions.values()
    assert response.json() == {"portal_url": portal["url"]}
    assert portal["url"].startswith("https://billing.stripe.com/p/session/")
    assert await tier_of(client, account) == "pro"  # opening the portal changes nothing


async def test_a_customer_who_never_paid_still_gets_the_portal(
    client: httpx.AsyncClient, stripe_fake: FakeStripe
) -> None:
    account = await register(client)
    await checkout_session(client, account, "pro")  # the customer exists; the checkout was left

    response = await client.post(PORTAL, headers=account.auth)

    assert response.status_code == 200, response.text
    assert len(stripe_fake.calls("/v1/billing_portal/sessions")) == 1


async def test_without_a_stripe_customer_the_portal_is_409_and_stripe_is_not_asked(
    app: FastAPI, client: httpx.AsyncClient, stripe_fake: FakeStripe
) -> None:
    account = await register(client)

    response = await client.post(PORTAL, headers=account.auth)

    assert (response.status_code, response.json()) == (409, NO_CUSTOMER)
    assert stripe_fake.requests == []
    assert await rows(app, "SELECT 1 FROM billing_customers") == []


async def test_a_customer_stripe_no_longer_knows_is_a_502(
    app: FastAPI, client: httpx.AsyncClient, stripe_fake: FakeStripe
) -> None:
    account = await register(client)
    await subscribe(client, stripe_fake, account, "pro")
    stripe_fake.customers.clear()  # deleted in Stripe's dashboard, say

    response = await client.post(PORTAL, headers=account.auth)

    assert (response.status_code, response.json()) == (
        502,
        {"detail": "The payment provider failed to handle the request; try again later"},
    )
    # Stripe's 400 (`resource_missing`) is not retried.
    assert len(stripe_fake.calls("/v1/billing_portal/sessions")) == 1
    assert stripe_fake.portal_sessions == {}


async def test_the_portal_needs_a_token(client: httpx.AsyncClient, stripe_fake: FakeStripe) -> None:
    response = await client.post(PORTAL)

    assert response.status_code == 401
    assert stripe_fake.requests == []


async def test_the_portal_counts_against_the_plans_rate_limit(
    client: httpx.AsyncClient, stripe_fake: FakeStripe
) -> None:
    account = await register(client)  # 1 request: its /auth/me

    statuses = [(await client.post(PORTAL, headers=account.auth)).status_code for _ in range(20)]

    assert statuses == [409] * 19 + [429]
    refused = await client.post(PORTAL, headers=account.auth)
    assert refused.json() == {
        "detail": "Rate limit exceeded: the free plan allows 20 requests per minute"
    }
    assert int(refused.headers["Retry-After"]) >= 1


# -- where the portal sends the user back -------------------------------------------------


BillingApp = Callable[..., AbstractAsyncContextManager[httpx.AsyncClient]]


@pytest.fixture
def billing_app(
    make_settings: Callable[..., Settings], database_url: str, stripe_fake: FakeStripe
) -> BillingApp:
    """A client of an app whose billing settings differ from the fake's by `overrides`."""

    @asynccontextmanager
    async def running(**overrides: Any) -> AsyncIterator[httpx.AsyncClient]:
        configured = {**billing_settings(stripe_fake), **overrides}
        app = create_app(make_settings(database_url=database_url, **configured))
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
                yield c

    return running


async def test_without_a_portal_return_url_the_portal_returns_to_billing_success_url(
    billing_app: BillingApp, stripe_fake: FakeStripe
) -> None:
    async with billing_app(billing_portal_return_url=None) as client:
        account = await register(client)
        await checkout_session(client, account, "pro")
        response = await client.post(PORTAL, headers=account.auth)

    assert response.status_code == 200, response.text
    (call,) = stripe_fake.calls("/v1/billing_portal/sessions")
    assert call.params["return_url"] == "app://billing/success"


async def test_without_either_return_url_the_portal_is_503_naming_the_setting(
    billing_app: BillingApp, stripe_fake: FakeStripe
) -> None:
    async with billing_app(billing_portal_return_url=None, billing_success_url=None) as client:
        account = await register(client)
        response = await client.post(PORTAL, headers=account.auth)

    assert (response.status_code, response.json()) == (
        503,
        {"detail": "Billing is not configured on this server: set BILLING_PORTAL_RETURN_URL"},
    )
    assert stripe_fake.requests == []


# -- plan changes made in the portal ------------------------------------------------------


async def test_a_plan_change_in_the_portal_moves_the_tier(
    app: FastAPI, client: httpx.AsyncClient, stripe_fake: FakeStripe, agents: ExampleAgents
) -> None:
    account = await register(client)
    subscription_id = await subscribe(client, stripe_fake, account, "pro")

    # The user picks power in the portal: Stripe swaps the item's price and says so.
    upgraded = stripe_fake.subscription_event(
        subscription_id, "updated", created=int(time.time()) + 10, price=PRICES["power"]
    )
    response = await deliver(client, upgraded)

    assert (response.status_code, response.json()) == (200, {"received": True})
    assert await tier_of(client, account) == "power"
    body = (await client.get(SUBSCRIPTION, headers=account.auth)).json()
    assert (body["tier"], body["status"], body["seats"]) == ("power", "active", 1)
    assert await rows(app, "SELECT tier FROM billing_subscriptions") == [("power",)]
    assert agents.enforced[-1] == (account.user_id, "power")
    # The price decides, not the metadata checkout wrote.
    assert stripe_fake.subscriptions[subscription_id]["metadata"]["tier"] == "pro"
    assert len(stripe_fake.calls("/v1/checkout/sessions")) == 1  # no second subscription


async def test_plan_and_seat_changes_in_the_portal_carry_the_seats(
    client: httpx.AsyncClient, stripe_fake: FakeStripe
) -> None:
    account = await register(client)
    subscription_id = await subscribe(client, stripe_fake, account, "pro")
    now = int(time.time())
    changes: list[tuple[dict[str, Any], tuple[str, int]]] = [
        ({"price": PRICES["team"], "quantity": 3}, ("team", 3)),  # to team, 3 seats
        ({"quantity": 5}, ("team", 5)),  # two more seats
        ({"price": PRICES["power"], "quantity": 1}, ("power", 1)),  # back to one person
    ]

    seen = []
    for step, (change, _) in enumerate(changes, start=1):
        event = stripe_fake.subscription_event(
            subscription_id, "updated", created=now + 10 * step, **change
        )
        assert (await deliver(client, event)).status_code == 200
        body = (await client.get(SUBSCRIPTION, headers=account.auth)).json()
        seen.append((body["tier"], body["seats"]))

    assert seen == [expected for _, expected in changes]
    assert await tier_of(client, account) == "power"


async def test_an_older_event_arriving_after_a_portal_change_does_not_undo_it(
    client: httpx.AsyncClient, stripe_fake: FakeStripe
) -> None:
    account = await register(client)
    subscription_id = await subscribe(client, stripe_fake, account, "pro")
    now = int(time.time())
    # Stripe sends these in this order; the network delivers the older one last.
    older = stripe_fake.subscription_event(
        subscription_id, "updated", created=now + 10, cancel_at_period_end=False
    )
    upgraded = stripe_fake.subscription_event(
        subscription_id, "updated", created=now + 20, price=PRICES["team"], quantity=4
    )

    for event in (upgraded, older):
        assert (await deliver(client, event)).status_code == 200

    body = (await client.get(SUBSCRIPTION, headers=account.auth)).json()
    assert (body["tier"], body["seats"]) == ("team", 4)
    assert await tier_of(client, account) == "team"


async def test_after_a_portal_upgrade_checkout_still_points_to_the_portal(
    client: httpx.AsyncClient, stripe_fake: FakeStripe
) -> None:
    account = await register(client)
    subscription_id = await subscribe(client, stripe_fake, account, "pro")
    upgraded = stripe_fake.subscription_event(
        subscription_id, "updated", created=int(time.time()) + 10, price=PRICES["power"]
    )
    assert (await deliver(client, upgraded)).status_code == 200

    checkout = await client.post(
        "/api/v1/billing/checkout", json={"tier": "team"}, headers=account.auth
    )
    portal = await client.post(PORTAL, headers=account.auth)

    assert checkout.status_code == 409
    assert "subscribed to the power plan" in checkout.json()["detail"]
    assert portal.status_code == 200
