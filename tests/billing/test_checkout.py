"""`POST /billing/checkout` against a fake Stripe that speaks Stripe's wire format."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import httpx
import pytest
from fastapi import FastAPI

from app.core.settings import Settings
from app.main import create_app
from tests.billing.conftest import (
    Account,
    checkout_session,
    deliver,
    register,
    rows,
    subscribe,
    tier_of,
)
from tests.billing.fake_stripe import API_KEY, PRICES, FakeStripe, billing_settings
from tests.e2e.server_process import free_port

CHECKOUT = "/api/v1/billing/checkout"


async def test_checkout_creates_a_subscription_session_for_the_tiers_price(
    client: httpx.AsyncClient, stripe_fake: FakeStripe
) -> None:
    account = await register(client)

    response = await client.post(CHECKOUT, json={"tier": "pro"}, headers=account.auth)

    assert response.status_code == 200, response.text
    (call,) = stripe_fake.calls("/v1/checkout/sessions")
    session = stripe_fake.sessions[response.json()["checkout_url"].rsplit("/", 1)[1]]
    assert response.json()["checkout_url"] == session["url"]
    assert call.params["mode"] == "subscription"
    assert call.params["line_items"] == [{"price": PRICES["pro"], "quantity": "1"}]
    assert call.params["success_url"] == "app://billing/success"
    assert call.params["cancel_url"] == "app://billing/cancel"
    assert call.params["client_reference_id"] == str(account.user_id)
    assert call.params["metadata"]["user_id"] == str(account.user_id)
    assert call.params["subscription_data"]["metadata"]["tier"] == "pro"
    (customer,) = stripe_fake.customers.values()
    assert call.params["customer"] == customer["id"]
    assert customer["email"] == account.email
    assert customer["metadata"] == {"user_id": str(account.user_id)}


async def test_checkout_creates_one_customer_per_user_and_stores_its_id(
    app: FastAPI, client: httpx.AsyncClient, stripe_fake: FakeStripe
) -> None:
    ada, bob = await register(client), await register(client)

    await checkout_session(client, ada, "pro")
    await checkout_session(client, ada, "power")
    await checkout_session(client, bob, "pro")

    assert len(stripe_fake.calls("/v1/customers")) == 2
    assert len(stripe_fake.customers) == 2
    stored = dict(await rows(app, "SELECT user_id, stripe_customer_id FROM billing_customers"))
    assert set(stored) == {ada.user_id, bob.user_id}
    sessions = [
        s for s in stripe_fake.sessions.values() if s["client_reference_id"] == str(ada.user_id)
    ]
    assert {s["customer"] for s in sessions} == {stored[ada.user_id]}


async def test_first_checkouts_at_once_still_make_one_customer(
    app: FastAPI, client: httpx.AsyncClient, stripe_fake: FakeStripe
) -> None:
    account = await register(client)

    answers = await asyncio.gather(
        *(client.post(CHECKOUT, json={"tier": "pro"}, headers=account.auth) for _ in range(4))
    )

    assert [a.status_code for a in answers] == [200] * 4
    # Each call reached Stripe with the same idempotency key: Stripe made one customer.
    assert {c.idempotency_key for c in stripe_fake.calls("/v1/customers")} == {
        f"customer-{account.user_id}"
    }
    assert len(stripe_fake.customers) == 1
    assert len(await rows(app, "SELECT 1 FROM billing_customers")) == 1


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        ({"tier": "free"}, "The free plan needs no checkout"),
        ({"tier": "pro", "seats": 3}, "The pro plan has no seats to choose"),
    ],
)
async def test_checkout_refuses_free_and_seats_outside_team(
    client: httpx.AsyncClient, stripe_fake: FakeStripe, body: dict[str, object], detail: str
) -> None:
    account = await register(client)

    response = await client.post(CHECKOUT, json=body, headers=account.auth)

    assert (response.status_code, response.json()) == (400, {"detail": detail})
    assert stripe_fake.requests == []


async def test_checkout_of_the_current_tier_is_400(
    client: httpx.AsyncClient, stripe_fake: FakeStripe
) -> None:
    account = await register(client)
    await subscribe(client, stripe_fake, account, "pro")
    sessions_before = len(stripe_fake.sessions)

    response = await client.post(CHECKOUT, json={"tier": "pro"}, headers=account.auth)

    assert (response.status_code, response.json()) == (
        400,
        {"detail": "You are already on the pro plan"},
    )
    assert len(stripe_fake.sessions) == sessions_before


async def billing_rows(app: FastAPI) -> list[list[tuple[object, ...]]]:
    return [
        await rows(app, "SELECT * FROM billing_customers ORDER BY 1"),
        await rows(app, "SELECT * FROM billing_subscriptions ORDER BY 1"),
    ]


def subscribed_to(tier: str) -> dict[str, str]:
    return {
        "detail": f"You are subscribed to the {tier} plan: change plans through the billing "
        "portal (POST /api/v1/billing/portal), not a new checkout"
    }


@pytest.mark.parametrize(
    "body", [{"tier": "power"}, {"tier": "team", "seats": 3}], ids=["power", "team"]
)
async def test_a_second_checkout_while_subscribed_is_409_and_never_reaches_stripe(
    app: FastAPI, client: httpx.AsyncClient, stripe_fake: FakeStripe, body: dict[str, object]
) -> None:
    account = await register(client)
    await subscribe(client, stripe_fake, account, "pro")
    seen = len(stripe_fake.requests)
    stored = await billing_rows(app)

    response = await client.post(CHECKOUT, json=body, headers=account.auth)

    assert (response.status_code, response.json()) == (409, subscribed_to("pro"))
    assert stripe_fake.requests[seen:] == []  # no customer, no checkout session asked for
    assert len(stripe_fake.calls("/v1/checkout/sessions")) == 1
    assert await billing_rows(app) == stored  # nothing stored
    assert await tier_of(client, account) == "pro"


@pytest.mark.parametrize("status", ["trialing", "past_due", "unpaid", "paused"])
async def test_every_live_status_refuses_a_second_checkout(
    client: httpx.AsyncClient, stripe_fake: FakeStripe, status: str
) -> None:
    account = await register(client)
    subscription_id = await subscribe(client, stripe_fake, account, "power")
    event = stripe_fake.subscription_event(
        subscription_id, "updated", created=int(time.time()) + 10, status=status
    )
    assert (await deliver(client, event)).status_code == 200
    seen = len(stripe_fake.requests)

    response = await client.post(CHECKOUT, json={"tier": "pro"}, headers=account.auth)

    assert (response.status_code, response.json()) == (409, subscribed_to("power"))
    assert stripe_fake.requests[seen:] == []


async def test_a_subscription_waiting_for_its_first_payment_refuses_a_second_checkout(
    client: httpx.AsyncClient, stripe_fake: FakeStripe
) -> None:
    account = await register(client)
    session_id = await checkout_session(client, account, "pro")
    pending = stripe_fake.checkout_completed(session_id, paid=False)  # a bank debit, say
    assert (await deliver(client, pending)).status_code == 200
    assert await tier_of(client, account) == "free"  # not paid yet

    response = await client.post(CHECKOUT, json={"tier": "power"}, headers=account.auth)

    # Were it allowed, both would bill once the debit goes through.
    assert (response.status_code, response.json()) == (409, subscribed_to("pro"))
    assert len(stripe_fake.calls("/v1/checkout/sessions")) == 1


@pytest.mark.parametrize("ending", ["deleted", "incomplete_expired"])
async def test_once_stripe_has_ended_the_subscription_checkout_is_open_again(
    client: httpx.AsyncClient, stripe_fake: FakeStripe, ending: str
) -> None:
    account = await register(client)
    later = int(time.time()) + 10
    if ending == "deleted":
        subscription_id = await subscribe(client, stripe_fake, account, "pro")
        event = stripe_fake.subscription_event(subscription_id, "deleted", created=later)
    else:  # the first payment never came: Stripe gives up on the subscription
        session_id = await checkout_session(client, account, "pro")
        pending = stripe_fake.checkout_completed(session_id, paid=False)
        assert (await deliver(client, pending)).status_code == 200
        subscription_id = str(stripe_fake.sessions[session_id]["subscription"])
        event = stripe_fake.subscription_event(
            subscription_id, "updated", created=later, status="incomplete_expired"
        )
    assert (await deliver(client, event)).status_code == 200

    response = await client.post(CHECKOUT, json={"tier": "pro"}, headers=account.auth)

    assert response.status_code == 200, response.text
    assert len(stripe_fake.calls("/v1/checkout/sessions")) == 2


async def test_team_checkout_buys_the_seats_asked_for(
    client: httpx.AsyncClient, stripe_fake: FakeStripe
) -> None:
    account = await register(client)

    await checkout_session(client, account, "team", seats=4)

    (call,) = stripe_fake.calls("/v1/checkout/sessions")
    assert call.params["line_items"] == [{"price": PRICES["team"], "quantity": "4"}]


async def test_checkout_needs_a_token(client: httpx.AsyncClient, stripe_fake: FakeStripe) -> None:
    response = await client.post(CHECKOUT, json={"tier": "pro"})

    assert response.status_code == 401
    assert stripe_fake.requests == []


async def test_stripe_failing_is_502_and_the_retry_reuses_the_customer(
    app: FastAPI, client: httpx.AsyncClient, stripe_fake: FakeStripe
) -> None:
    account = await register(client)
    # The library retries twice: all three attempts fail.
    stripe_fake.fail_next("/v1/checkout/sessions", times=3)

    failed = await client.post(CHECKOUT, json={"tier": "pro"}, headers=account.auth)
    retried = await client.post(CHECKOUT, json={"tier": "pro"}, headers=account.auth)

    assert (failed.status_code, failed.json()) == (
        502,
        {"detail": "The payment provider failed to handle the request; try again later"},
    )
    assert retried.status_code == 200
    assert len(stripe_fake.customers) == 1
    assert len(stripe_fake.calls("/v1/customers")) == 1
    assert len(stripe_fake.sessions) == 1
    assert await rows(app, "SELECT stripe_customer_id FROM billing_customers") == [
        (next(iter(stripe_fake.customers)),)
    ]
    assert await rows(app, "SELECT tier FROM users") == [("free",)]


async def test_a_passing_stripe_hiccup_is_retried_with_the_same_idempotency_key(
    client: httpx.AsyncClient, stripe_fake: FakeStripe
) -> None:
    account = await register(client)
    stripe_fake.fail_next("/v1/customers", times=1)

    response = await client.post(CHECKOUT, json={"tier": "pro"}, headers=account.auth)

    assert response.status_code == 200
    first, second = stripe_fake.calls("/v1/customers")
    assert first.idempotency_key == second.idempotency_key
    assert len(stripe_fake.customers) == 1


async def test_stripe_unreachable_is_503_with_retry_after_and_nothing_is_stored(
    make_settings: Callable[..., Settings], database_url: str, stripe_fake: FakeStripe
) -> None:
    down = {**billing_settings(stripe_fake), "stripe_api_base": f"http://127.0.0.1:{free_port()}"}
    app = create_app(make_settings(database_url=database_url, **down))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            account = await register(client)
            response = await client.post(CHECKOUT, json={"tier": "pro"}, headers=account.auth)
            stored = await rows(app, "SELECT 1 FROM billing_customers")

    assert response.status_code == 503
    assert response.json() == {
        "detail": "The payment provider cannot be reached; try again shortly"
    }
    assert int(response.headers["Retry-After"]) >= 1
    assert stored == []


async def test_a_wrong_api_key_is_a_502_not_a_crash(
    make_settings: Callable[..., Settings], database_url: str, stripe_fake: FakeStripe
) -> None:
    wrong = {**billing_settings(stripe_fake), "stripe_secret_key": API_KEY + "-revoked"}
    app = create_app(make_settings(database_url=database_url, **wrong))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            account: Account = await register(client)
            response = await client.post(CHECKOUT, json={"tier": "pro"}, headers=account.auth)

    assert response.status_code == 502
    assert "sk_test" not in response.text
