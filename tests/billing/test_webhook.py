"""`POST /billing/webhook`: Stripe-signed events move the tier, each exactly once, in order."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import datetime

import httpx
import pytest
from fastapi import FastAPI

from app.core.body_limit import STRIPE_WEBHOOK_BODY_BYTES
from tests.billing.conftest import (
    WEBHOOK,
    ExampleAgents,
    checkout_session,
    deliver,
    paid_checkout,
    register,
    rows,
    subscribe,
    tier_of,
)
from tests.billing.fake_stripe import FakeStripe, sign


async def test_a_signed_checkout_completed_makes_the_user_pro(
    app: FastAPI, client: httpx.AsyncClient, stripe_fake: FakeStripe
) -> None:
    account = await register(client)
    session_id = await checkout_session(client, account, "pro")
    assert await tier_of(client, account) == "free"  # the checkout alone changes nothing

    response = await deliver(client, stripe_fake.checkout_completed(session_id))

    assert (response.status_code, response.json()) == (200, {"received": True})
    assert await tier_of(client, account) == "pro"
    subscription = (await client.get("/api/v1/billing/subscription", headers=account.auth)).json()
    assert subscription["tier"] == "pro"
    assert subscription["status"] == "active"
    assert subscription["cancel_at_period_end"] is False


async def test_the_subscription_events_fill_in_the_period_and_carry_team_seats(
    client: httpx.AsyncClient, stripe_fake: FakeStripe
) -> None:
    account = await register(client)
    subscription_id = await subscribe(client, stripe_fake, account, "team", seats=3)

    response = await deliver(
        client, stripe_fake.subscription_event(subscription_id, "created", status="active")
    )

    assert response.status_code == 200
    body = (await client.get("/api/v1/billing/subscription", headers=account.auth)).json()
    period_end = stripe_fake.subscriptions[subscription_id]["items"]["data"][0][
        "current_period_end"
    ]
    assert (body["tier"], body["seats"], body["status"]) == ("team", 3, "active")
    assert body["current_period_end"] is not None
    assert int(datetime.fromisoformat(body["current_period_end"]).timestamp()) == period_end


async def test_a_replayed_event_answers_200_and_changes_nothing(
    app: FastAPI, client: httpx.AsyncClient, stripe_fake: FakeStripe
) -> None:
    account = await register(client)
    completed, subscription_id = await paid_checkout(client, stripe_fake, account, created=1000)
    assert (await deliver(client, completed)).status_code == 200
    deleted = stripe_fake.subscription_event(subscription_id, "deleted", created=2000)
    assert (await deliver(client, deleted)).status_code == 200
    assert await tier_of(client, account) == "free"

    # The same event, delivered again (Stripe retries; an attacker replays a capture).
    replay = await deliver(client, completed)

    assert (replay.status_code, replay.json()) == (200, {"received": True})
    assert await tier_of(client, account) == "free"
    assert await rows(app, "SELECT count(*) FROM billing_events") == [(2,)]


async def test_a_replay_is_refused_by_its_id_even_where_its_content_would_still_apply(
    client: httpx.AsyncClient, stripe_fake: FakeStripe
) -> None:
    account = await register(client)
    subscription_id = await subscribe(client, stripe_fake, account, "pro")
    failed = stripe_fake.invoice_event(subscription_id, paid=False, created=2_000_000_000)
    paid = stripe_fake.invoice_event(subscription_id, paid=True, created=2_000_000_000)
    for event in (failed, paid):
        assert (await deliver(client, event)).status_code == 200

    # Same second as the payment: by its content alone it would make the subscription
    # past due again. Only its id tells that it was applied already.
    assert (await deliver(client, failed)).status_code == 200

    body = (await client.get("/api/v1/billing/subscription", headers=account.auth)).json()
    assert (body["status"], body["grace_period_end"]) == ("active", None)


async def test_two_deliveries_of_one_event_at_once_apply_once(
    app: FastAPI, client: httpx.AsyncClient, stripe_fake: FakeStripe, agents: ExampleAgents
) -> None:
    account = await register(client)
    session_id = await checkout_session(client, account, "pro")
    completed = stripe_fake.checkout_completed(session_id)

    answers = await asyncio.gather(*(deliver(client, completed) for _ in range(5)))

    assert [a.status_code for a in answers] == [200] * 5
    assert await tier_of(client, account) == "pro"
    assert await rows(app, "SELECT count(*) FROM billing_events") == [(1,)]
    assert await rows(app, "SELECT count(*) FROM billing_subscriptions") == [(1,)]
    assert agents.enforced == [(account.user_id, "pro")]  # the plan changed once


async def test_an_out_of_order_event_never_rolls_the_subscription_back(
    client: httpx.AsyncClient, stripe_fake: FakeStripe
) -> None:
    account = await register(client)
    completed, subscription_id = await paid_checkout(client, stripe_fake, account, created=1000)
    # Stripe sent these in this order; the network delivers the older one last.
    updated = stripe_fake.subscription_event(
        subscription_id, "updated", created=1500, status="active"
    )
    deleted = stripe_fake.subscription_event(subscription_id, "deleted", created=3000)

    for event in (completed, deleted, updated):
        assert (await deliver(client, event)).status_code == 200

    assert await tier_of(client, account) == "free"
    body = (await client.get("/api/v1/billing/subscription", headers=account.auth)).json()
    assert body["status"] == "canceled"


async def test_an_event_about_an_older_billing_period_is_ignored(
    client: httpx.AsyncClient, stripe_fake: FakeStripe
) -> None:
    account = await register(client)
    subscription_id = await subscribe(client, stripe_fake, account, "pro")
    now = int(time.time())
    renewed = stripe_fake.subscription_event(
        subscription_id, "updated", created=now + 10, period_end=now + 60 * 86400
    )
    stale = stripe_fake.subscription_event(
        subscription_id,
        "updated",
        created=now + 20,  # later by its clock, but about the earlier period
        period_end=now + 30 * 86400,
        cancel_at_period_end=True,
    )

    for event in (renewed, stale):
        assert (await deliver(client, event)).status_code == 200

    body = (await client.get("/api/v1/billing/subscription", headers=account.auth)).json()
    assert body["cancel_at_period_end"] is False
    ends = datetime.fromisoformat(body["current_period_end"])
    assert int(ends.timestamp()) == now + 60 * 86400


async def test_the_same_second_an_incomplete_snapshot_does_not_undo_activation(
    client: httpx.AsyncClient, stripe_fake: FakeStripe
) -> None:
    account = await register(client)
    completed, subscription_id = await paid_checkout(client, stripe_fake, account, created=5000)
    # Stripe makes the subscription incomplete, then active, in the second checkout completes.
    created = stripe_fake.subscription_event(
        subscription_id, "created", created=5000, status="incomplete"
    )

    for event in (completed, created):
        assert (await deliver(client, event)).status_code == 200

    assert await tier_of(client, account) == "pro"


@pytest.mark.parametrize(
    "signature",
    [
        pytest.param(None, id="missing"),
        pytest.param("", id="empty"),
        pytest.param("garbage", id="garbage"),
        pytest.param("t=notanumber,v1=abc", id="bad-timestamp"),
        pytest.param("wrong-secret", id="wrong-secret"),
        pytest.param("too-old", id="outside-tolerance"),
        pytest.param("tampered", id="tampered-body"),
    ],
)
async def test_a_bad_or_missing_signature_is_400_and_changes_nothing(
    app: FastAPI, client: httpx.AsyncClient, stripe_fake: FakeStripe, signature: str | None
) -> None:
    account = await register(client)
    session_id = await checkout_session(client, account, "pro")
    payload = json.dumps(stripe_fake.checkout_completed(session_id))
    headers = {"Content-Type": "application/json"}
    if signature == "wrong-secret":
        headers["Stripe-Signature"] = sign(payload, secret="whsec_someone_else")
    elif signature == "too-old":
        headers["Stripe-Signature"] = sign(payload, timestamp=int(time.time()) - 301)
    elif signature == "tampered":
        headers["Stripe-Signature"] = sign(payload)
        payload = payload.replace('"pro"', '"team"')
    elif signature is not None:
        headers["Stripe-Signature"] = signature

    response = await client.post(WEBHOOK, content=payload, headers=headers)

    assert (response.status_code, response.json()) == (
        400,
        {"detail": "Invalid or missing Stripe-Signature"},
    )
    assert await tier_of(client, account) == "free"
    assert await rows(app, "SELECT count(*) FROM billing_events") == [(0,)]


@pytest.mark.parametrize(
    ("payload", "detail"),
    [
        (b"{not json", "The webhook body is not JSON"),
        (b"[1, 2]", "The webhook body is not a Stripe event"),
        (b'{"id": "evt_1"}', "Malformed Stripe event: the event lacks id, type, created or data"),
        (b"\xff\xfe", "The webhook body is not UTF-8"),
    ],
)
async def test_a_signed_body_that_is_not_an_event_is_400(
    app: FastAPI, client: httpx.AsyncClient, payload: bytes, detail: str
) -> None:
    text = payload.decode("latin-1")
    response = await client.post(WEBHOOK, content=payload, headers={"Stripe-Signature": sign(text)})

    assert (response.status_code, response.json()) == (400, {"detail": detail})
    assert await rows(app, "SELECT count(*) FROM billing_events") == [(0,)]


async def test_an_unknown_event_type_answers_200_and_is_ignored(
    app: FastAPI, client: httpx.AsyncClient, stripe_fake: FakeStripe
) -> None:
    account = await register(client)
    event = {
        "id": "evt_unknown_1",
        "object": "event",
        "type": "customer.tax_id.created",
        "created": int(time.time()),
        "data": {"object": {"id": "txi_1", "object": "tax_id"}},
    }

    response = await deliver(client, event)

    assert (response.status_code, response.json()) == (200, {"received": True})
    assert await tier_of(client, account) == "free"


async def test_a_webhook_body_over_its_limit_is_413(client: httpx.AsyncClient) -> None:
    payload = b'{"pad": "' + b"x" * STRIPE_WEBHOOK_BODY_BYTES + b'"}'

    response = await client.post(
        WEBHOOK, content=payload, headers={"Stripe-Signature": sign(payload.decode())}
    )

    assert response.status_code == 413


async def test_an_event_for_a_customer_of_another_user_never_moves_my_subscription(
    client: httpx.AsyncClient, stripe_fake: FakeStripe
) -> None:
    ada, bob = await register(client), await register(client)
    ada_subscription = await subscribe(client, stripe_fake, ada, "pro")
    bob_session = await checkout_session(client, bob, "power")
    bob_customer = stripe_fake.sessions[bob_session]["customer"]
    # Bob's customer, Ada's subscription id: no event may move one user's plan for another.
    hijack = stripe_fake.subscription_event(
        ada_subscription, "deleted", customer=bob_customer, created=int(time.time()) + 60
    )

    response = await deliver(client, hijack)

    assert response.status_code == 200
    assert await tier_of(client, ada) == "pro"
    assert await tier_of(client, bob) == "free"


async def test_an_event_for_an_unknown_customer_is_ignored(
    client: httpx.AsyncClient, stripe_fake: FakeStripe
) -> None:
    account = await register(client)
    session_id = await checkout_session(client, account, "pro")
    event = stripe_fake.checkout_completed(session_id)
    event["data"]["object"].update(customer="cus_nobody", client_reference_id=None, metadata={})

    response = await deliver(client, event)

    assert response.status_code == 200
    assert await tier_of(client, account) == "free"
