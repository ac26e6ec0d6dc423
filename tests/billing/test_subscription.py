"""`GET`/`DELETE /billing/subscription`, downgrades, the grace period, and billing left off."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from fastapi import FastAPI

from app.billing.service import GRACE_PERIOD, expire_grace_periods
from app.core.settings import Settings
from app.main import create_app
from tests.billing.conftest import (
    WEBHOOK,
    ExampleAgents,
    checkout_session,
    deliver,
    register,
    rows,
    subscribe,
    tier_of,
)
from tests.billing.fake_stripe import WEBHOOK_SECRET, FakeStripe, sign

SUBSCRIPTION = "/api/v1/billing/subscription"


async def test_a_free_user_has_no_subscription(client: httpx.AsyncClient) -> None:
    account = await register(client)

    response = await client.get(SUBSCRIPTION, headers=account.auth)

    assert response.status_code == 200
    assert response.json() == {
        "tier": "free",
        "status": "none",
        "current_period_end": None,
        "cancel_at_period_end": False,
        "seats": 1,
        "grace_period_end": None,
        "restrictions": [],
    }


async def test_each_user_sees_only_their_own_subscription(
    client: httpx.AsyncClient, stripe_fake: FakeStripe
) -> None:
    ada, bob = await register(client), await register(client)
    await subscribe(client, stripe_fake, ada, "power")

    mine = (await client.get(SUBSCRIPTION, headers=ada.auth)).json()
    theirs = (await client.get(SUBSCRIPTION, headers=bob.auth)).json()
    cancelled = await client.delete(SUBSCRIPTION, headers=bob.auth)

    assert (mine["tier"], mine["status"]) == ("power", "active")
    assert (theirs["tier"], theirs["status"]) == ("free", "none")
    assert (cancelled.status_code, cancelled.json()) == (
        404,
        {"detail": "You have no active subscription"},
    )
    assert stripe_fake.calls(f"/v1/subscriptions/{next(iter(stripe_fake.subscriptions))}") == []


async def test_cancelling_asks_stripe_to_end_at_period_end_and_keeps_the_tier_until_then(
    client: httpx.AsyncClient, stripe_fake: FakeStripe
) -> None:
    account = await register(client)
    subscription_id = await subscribe(client, stripe_fake, account, "pro")

    response = await client.delete(SUBSCRIPTION, headers=account.auth)

    assert response.status_code == 200, response.text
    assert response.json()["cancel_at_period_end"] is True
    assert response.json()["tier"] == "pro"
    (call,) = stripe_fake.calls(f"/v1/subscriptions/{subscription_id}")
    assert (call.method, call.params) == ("POST", {"cancel_at_period_end": "true"})
    assert stripe_fake.subscriptions[subscription_id]["cancel_at_period_end"] is True
    assert await tier_of(client, account) == "pro"


async def test_deletion_brings_the_tier_back_to_free_with_the_downgrade_effects(
    client: httpx.AsyncClient, stripe_fake: FakeStripe, agents: ExampleAgents
) -> None:
    account = await register(client)
    subscription_id = await subscribe(client, stripe_fake, account, "pro")
    assert (await client.delete(SUBSCRIPTION, headers=account.auth)).status_code == 200

    # The period ends: Stripe deletes the subscription.
    deleted = stripe_fake.subscription_event(
        subscription_id, "deleted", created=int(time.time()) + 5
    )
    assert (await deliver(client, deleted)).status_code == 200

    assert await tier_of(client, account) == "free"
    body = (await client.get(SUBSCRIPTION, headers=account.auth)).json()
    assert (body["tier"], body["status"]) == ("free", "canceled")
    # Five agents, two allowed on free: three disabled, newest first, none deleted.
    assert body["restrictions"] == [
        {
            "kind": "batch_agents",
            "detail": "3 agents disabled (newest first): the free plan allows 2 enabled",
        }
    ]
    assert agents.enforced == [(account.user_id, "pro"), (account.user_id, "free")]


async def test_a_failing_stripe_cancels_nothing(
    client: httpx.AsyncClient, stripe_fake: FakeStripe
) -> None:
    account = await register(client)
    subscription_id = await subscribe(client, stripe_fake, account, "pro")
    stripe_fake.fail_next(f"/v1/subscriptions/{subscription_id}", times=3)

    response = await client.delete(SUBSCRIPTION, headers=account.auth)

    assert response.status_code == 502
    body = (await client.get(SUBSCRIPTION, headers=account.auth)).json()
    assert body["cancel_at_period_end"] is False
    assert stripe_fake.subscriptions[subscription_id]["cancel_at_period_end"] is False


async def test_a_failed_payment_keeps_the_tier_through_the_grace_period_then_free(
    app: FastAPI, client: httpx.AsyncClient, stripe_fake: FakeStripe, agents: ExampleAgents
) -> None:
    account = await register(client)
    subscription_id = await subscribe(client, stripe_fake, account, "pro")
    failed_at = int(time.time())

    failed = stripe_fake.invoice_event(subscription_id, paid=False, created=failed_at)
    assert (await deliver(client, failed)).status_code == 200

    body = (await client.get(SUBSCRIPTION, headers=account.auth)).json()
    grace_end = datetime.fromtimestamp(failed_at, UTC) + GRACE_PERIOD
    assert (body["tier"], body["status"]) == ("pro", "past_due")
    assert datetime.fromisoformat(body["grace_period_end"]) == grace_end

    async with app.state.sessionmaker() as session:
        settings, effects = app.state.settings, app.state.downgrade_effects
        before = await expire_grace_periods(
            session=session, settings=settings, effects=effects, now=grace_end - timedelta(hours=1)
        )
        after = await expire_grace_periods(
            session=session, settings=settings, effects=effects, now=grace_end
        )

    assert (before, after) == (0, 1)
    assert await tier_of(client, account) == "free"
    assert agents.enforced[-1] == (account.user_id, "free")


async def test_an_invoice_paid_within_the_grace_period_keeps_the_tier(
    app: FastAPI, client: httpx.AsyncClient, stripe_fake: FakeStripe
) -> None:
    account = await register(client)
    subscription_id = await subscribe(client, stripe_fake, account, "pro")
    now = int(time.time())
    for paid, created in ((False, now), (True, now + 3600)):
        event = stripe_fake.invoice_event(subscription_id, paid=paid, created=created)
        assert (await deliver(client, event)).status_code == 200

    async with app.state.sessionmaker() as session:
        changed = await expire_grace_periods(
            session=session,
            settings=app.state.settings,
            effects=app.state.downgrade_effects,
            now=datetime.now(UTC) + GRACE_PERIOD * 2,
        )

    assert changed == 0
    body = (await client.get(SUBSCRIPTION, headers=account.auth)).json()
    assert (body["tier"], body["status"], body["grace_period_end"]) == ("pro", "active", None)


async def test_unpaid_since_before_the_grace_period_means_free_at_once(
    client: httpx.AsyncClient, stripe_fake: FakeStripe
) -> None:
    account = await register(client)
    session_id = await checkout_session(client, account, "pro")
    # Deliveries Stripe kept retrying: the subscription went unpaid over a grace period ago.
    long_ago = int((datetime.now(UTC) - GRACE_PERIOD - timedelta(hours=1)).timestamp())
    completed = stripe_fake.checkout_completed(session_id, created=long_ago - 3600)
    subscription_id = stripe_fake.sessions[session_id]["subscription"]
    unpaid = stripe_fake.subscription_event(
        subscription_id, "updated", created=long_ago, status="unpaid"
    )

    for event in (completed, unpaid):
        assert (await deliver(client, event)).status_code == 200

    assert await tier_of(client, account) == "free"


async def test_an_old_failure_arriving_late_does_not_shorten_the_grace_period(
    client: httpx.AsyncClient, stripe_fake: FakeStripe
) -> None:
    account = await register(client)
    subscription_id = await subscribe(client, stripe_fake, account, "pro")
    long_ago = int((datetime.now(UTC) - GRACE_PERIOD - timedelta(days=1)).timestamp())
    unpaid = stripe_fake.subscription_event(
        subscription_id, "updated", created=int(time.time()) + 10, status="unpaid"
    )
    failed = stripe_fake.invoice_event(subscription_id, paid=False, created=long_ago)

    # The failure from long ago arrives after the newer `unpaid`: it is out of date,
    # so the grace period runs from the `unpaid` event, and the tier stays.
    for event in (unpaid, failed):
        assert (await deliver(client, event)).status_code == 200

    assert await tier_of(client, account) == "pro"


async def test_applied_event_ids_are_forgotten_after_the_retention(
    app: FastAPI, client: httpx.AsyncClient, stripe_fake: FakeStripe
) -> None:
    account = await register(client)
    await subscribe(client, stripe_fake, account, "pro")

    async with app.state.sessionmaker() as session:
        await expire_grace_periods(
            session=session,
            settings=app.state.settings,
            effects=app.state.downgrade_effects,
            now=datetime.now(UTC) + timedelta(days=31),
        )

    assert await rows(app, "SELECT count(*) FROM billing_events") == [(0,)]


# -- billing left off ---------------------------------------------------------------------


@pytest.fixture
async def unconfigured(
    make_settings: Callable[..., Settings], database_url: str
) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(make_settings(database_url=database_url))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield client


async def test_without_settings_billing_routes_answer_503_naming_what_is_missing(
    unconfigured: httpx.AsyncClient,
) -> None:
    account = await register(unconfigured)

    checkout = await unconfigured.post(
        "/api/v1/billing/checkout", json={"tier": "team"}, headers=account.auth
    )
    portal = await unconfigured.post("/api/v1/billing/portal", headers=account.auth)
    read = await unconfigured.get(SUBSCRIPTION, headers=account.auth)
    cancel = await unconfigured.delete(SUBSCRIPTION, headers=account.auth)
    webhook = await unconfigured.post(WEBHOOK, content=b"{}", headers={"Stripe-Signature": "x"})

    prefix = "Billing is not configured on this server: set "
    assert (checkout.status_code, checkout.json()["detail"]) == (
        503,
        prefix + "STRIPE_SECRET_KEY, STRIPE_PRICE_TEAM, BILLING_SUCCESS_URL, BILLING_CANCEL_URL",
    )
    assert (portal.status_code, portal.json()["detail"]) == (
        503,
        prefix + "STRIPE_SECRET_KEY, BILLING_PORTAL_RETURN_URL",
    )
    for response in (read, cancel):
        assert (response.status_code, response.json()["detail"]) == (
            503,
            prefix + "STRIPE_SECRET_KEY",
        )
    assert (webhook.status_code, webhook.json()["detail"]) == (
        503,
        prefix + "STRIPE_WEBHOOK_SECRET",
    )
    assert "Retry-After" not in checkout.headers  # waiting will not configure it
    assert "Retry-After" not in portal.headers


async def test_the_webhook_needs_only_its_secret(
    make_settings: Callable[..., Settings], database_url: str
) -> None:
    app = create_app(make_settings(database_url=database_url, stripe_webhook_secret=WEBHOOK_SECRET))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            account = await register(client)
            payload = (
                '{"id": "evt_1", "object": "event", "type": "checkout.session.completed", '
                f'"created": {int(time.time())}, "data": {{"object": {{"object": '
                '"checkout.session", "mode": "subscription", "subscription": "sub_1", '
                '"customer": "cus_1", "payment_status": "paid", '
                f'"client_reference_id": "{account.user_id}", "metadata": {{"tier": "power"}}}}}}}}'
            )
            response = await client.post(
                WEBHOOK, content=payload, headers={"Stripe-Signature": sign(payload)}
            )
            tier = await tier_of(client, account)

    assert response.status_code == 200, response.text
    assert tier == "power"
