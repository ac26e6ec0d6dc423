"""A new user, as they would go: hit the free limit, pay, and get the new limits at once.

The real server on loopback, billing pointed at the fake Stripe (its real wire
format, through the `stripe` package), the webhook signed as Stripe signs it.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from tests.billing.fake_stripe import FakeStripe, billing_settings, sign
from tests.e2e.conftest import Live


@pytest.fixture
def live_settings(stripe_fake: FakeStripe) -> dict[str, Any]:
    return billing_settings(stripe_fake)


async def test_a_free_user_hits_the_limit_pays_and_the_new_limit_applies_at_once(
    live: Live, stripe_fake: FakeStripe
) -> None:
    account = await live.account()  # 1 request: its /auth/me
    auth = {"Authorization": f"Bearer {account.token}"}
    async with httpx.AsyncClient(base_url=live.base_url, headers=auth) as http:
        checkout = await http.post("/api/v1/billing/checkout", json={"tier": "pro"})  # 2
        assert checkout.status_code == 200, checkout.text
        assert checkout.json()["checkout_url"].startswith("https://checkout.stripe.com/")
        for _ in range(18):  # 3 … 20
            assert (await http.get("/api/v1/auth/me")).status_code == 200

        limited = await http.get("/api/v1/auth/me")
        assert limited.status_code == 429
        assert limited.json() == {
            "detail": "Rate limit exceeded: the free plan allows 20 requests per minute"
        }
        assert 1 <= int(limited.headers["Retry-After"]) <= 60

        # The user pays on Stripe's page; Stripe tells the server.
        session_id = checkout.json()["checkout_url"].rsplit("/", 1)[1]
        payload = json.dumps(stripe_fake.checkout_completed(session_id))
        async with httpx.AsyncClient(base_url=live.base_url) as stripe_side:
            delivered = await stripe_side.post(
                "/api/v1/billing/webhook",
                content=payload,
                headers={"Content-Type": "application/json", "Stripe-Signature": sign(payload)},
            )
        assert delivered.status_code == 200, delivered.text

        me = await http.get("/api/v1/auth/me")
        assert (me.status_code, me.json()["tier"]) == (200, "pro")
        answered = 1
        while (await http.get("/api/v1/auth/me")).status_code == 200:
            answered += 1
            assert answered <= 60
        refused = await http.get("/api/v1/billing/subscription")

    assert answered == 60
    assert refused.status_code == 429
    assert refused.json()["detail"] == (
        "Rate limit exceeded: the pro plan allows 60 requests per minute"
    )
