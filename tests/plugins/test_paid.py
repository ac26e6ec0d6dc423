"""Paid installs through Stripe (the fake, over HTTP with the real `stripe` package): the
PaymentIntent on the user's customer, the webhook that confirms it exactly once, the
70/30 split in whole cents, authors' Connect accounts, payouts and earnings."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import httpx
import pytest
from fastapi import FastAPI

from app.core.settings import Settings
from app.main import create_app
from app.plugins.revenue import pay_out_pending, split
from tests.billing.conftest import Account, deliver
from tests.billing.fake_stripe import FakeStripe
from tests.plugins.conftest import PLUGINS, Market, rows, user_on


async def buy(
    client: httpx.AsyncClient, stripe: FakeStripe, account: Account, plugin_id: str
) -> httpx.Response:
    """Install a paid plugin and pay: the webhook's answer."""
    pending = await client.post(f"{PLUGINS}/{plugin_id}/install", headers=account.auth)
    assert pending.status_code == 202, pending.text
    event = stripe.payment_intent_event(pending.json()["payment_intent_id"])
    return await deliver(client, event)


@pytest.mark.parametrize(
    ("price", "author", "platform"),
    [
        (99, 69, 30),
        (55, 39, 16),
        (101, 71, 30),
        (50, 35, 15),
        (1999, 1399, 600),
        (100_000, 70_000, 30_000),
    ],
)
def test_the_split_is_70_30_in_whole_cents_rounding_half_to_the_author(
    price: int, author: int, platform: int
) -> None:
    assert split(price) == (author, platform)


def test_the_shares_always_sum_to_the_price() -> None:
    for price in range(100_001):
        author, platform = split(price)
        assert author + platform == price
        assert abs(author * 100 - price * 70) <= 50  # within half a cent of 70%


async def test_a_paid_install_charges_the_stored_customer_and_the_webhook_installs_it(
    app: FastAPI,
    client: httpx.AsyncClient,
    market: Market,
    power: Account,
    stripe_fake: FakeStripe,
) -> None:
    plugin_id = await market.publish(price_cents=99)

    pending = await client.post(f"{PLUGINS}/{plugin_id}/install", headers=power.auth)
    repeated = await client.post(f"{PLUGINS}/{plugin_id}/install", headers=power.auth)

    assert pending.status_code == 202
    body = pending.json()
    assert body["ok"] is False
    assert body["status"] == "payment_required"
    assert body["download_url"] is None
    assert body["client_secret"].startswith(body["payment_intent_id"])
    assert repeated.json()["payment_intent_id"] == body["payment_intent_id"]  # the same intent
    (intent,) = stripe_fake.payment_intents.values()
    (customer_id,) = await rows(
        app,
        "SELECT stripe_customer_id FROM billing_customers WHERE user_id = :id",
        id=power.user_id,
    )
    assert (intent["customer"], intent["amount"], intent["currency"]) == (customer_id[0], 99, "usd")
    assert intent["metadata"]["user_id"] == str(power.user_id)
    assert len(stripe_fake.customers) == 1
    assert (await client.get(f"{PLUGINS}/{plugin_id}", headers=power.auth)).json()[
        "install_count"
    ] == 0

    succeeded = stripe_fake.payment_intent_event(body["payment_intent_id"])
    delivered = await deliver(client, succeeded)
    replayed = await deliver(client, succeeded)
    installed = await client.post(f"{PLUGINS}/{plugin_id}/install", headers=power.auth)

    assert delivered.status_code == replayed.status_code == 200
    assert installed.status_code == 200
    assert installed.json()["download_url"]
    revenue = await rows(
        app,
        "SELECT amount_cents, author_cents, platform_cents, author_id FROM plugin_revenue_events",
    )
    assert revenue == [(99, 69, 30, market.author.user_id)]  # once, despite the replay
    assert await rows(app, "SELECT install_count FROM plugins") == [(1,)]


async def test_a_failed_payment_installs_nothing_and_the_next_install_starts_afresh(
    app: FastAPI,
    client: httpx.AsyncClient,
    market: Market,
    power: Account,
    stripe_fake: FakeStripe,
) -> None:
    plugin_id = await market.publish(price_cents=500)
    first = (await client.post(f"{PLUGINS}/{plugin_id}/install", headers=power.auth)).json()

    declined = await deliver(
        client, stripe_fake.payment_intent_event(first["payment_intent_id"], succeeded=False)
    )
    retry = (await client.post(f"{PLUGINS}/{plugin_id}/install", headers=power.auth)).json()

    assert declined.status_code == 200
    assert retry["payment_intent_id"] != first["payment_intent_id"]
    assert await rows(app, "SELECT count(*) FROM plugin_installs") == [(0,)]
    assert await rows(app, "SELECT count(*) FROM plugin_revenue_events") == [(0,)]


async def test_a_payment_event_can_never_install_for_another_user(
    app: FastAPI,
    client: httpx.AsyncClient,
    market: Market,
    power: Account,
    stripe_fake: FakeStripe,
) -> None:
    plugin_id = await market.publish(price_cents=300)
    pending = (await client.post(f"{PLUGINS}/{plugin_id}/install", headers=power.auth)).json()
    intent = stripe_fake.payment_intents[pending["payment_intent_id"]]
    intent["customer"] = "cus_someone_else"

    await deliver(client, stripe_fake.payment_intent_event(pending["payment_intent_id"]))

    assert await rows(app, "SELECT count(*) FROM plugin_installs") == [(0,)]


async def test_paying_once_covers_reinstalling(
    app: FastAPI,
    client: httpx.AsyncClient,
    market: Market,
    power: Account,
    stripe_fake: FakeStripe,
) -> None:
    plugin_id = await market.publish(price_cents=250)
    await buy(client, stripe_fake, power, plugin_id)
    await client.delete(f"{PLUGINS}/{plugin_id}/install", headers=power.auth)

    again = await client.post(f"{PLUGINS}/{plugin_id}/install", headers=power.auth)

    assert again.status_code == 200
    assert len(stripe_fake.payment_intents) == 1


async def test_authors_onboard_to_connect_get_their_share_transferred_and_see_earnings(
    app: FastAPI,
    client: httpx.AsyncClient,
    market: Market,
    stripe_fake: FakeStripe,
) -> None:
    plugin_id = await market.publish(price_cents=55)
    buyers = [await user_on(app, client, "power") for _ in range(3)]
    for buyer in buyers:
        assert (await buy(client, stripe_fake, buyer, plugin_id)).status_code == 200

    before = await pay_out_pending_now(app)  # no account yet: shares wait
    onboarding = await client.post(f"{PLUGINS}/payouts/onboarding", headers=market.author.auth)
    again = await client.post(f"{PLUGINS}/payouts/onboarding", headers=market.author.auth)
    paid = await pay_out_pending_now(app)
    paid_again = await pay_out_pending_now(app)
    earnings = await client.get(f"{PLUGINS}/earnings", headers=market.author.auth)

    assert before == 0
    assert onboarding.status_code == 200, onboarding.text
    account_id = onboarding.json()["account_id"]
    assert onboarding.json()["onboarding_url"].startswith("https://connect.stripe.com/")
    assert again.json()["account_id"] == account_id
    assert len(stripe_fake.accounts) == 1
    assert (paid, paid_again) == (3, 0)
    transfers = list(stripe_fake.transfers.values())
    assert [(t["amount"], t["destination"]) for t in transfers] == [(39, account_id)] * 3
    assert all(t["source_transaction"].startswith("ch_") for t in transfers)
    body = earnings.json()
    assert body["payout_account"] == account_id
    assert body["total_author_cents"] == 3 * 39
    (month,) = body["months"]
    assert month["sales"] == 3
    assert (month["gross_cents"], month["author_cents"], month["platform_cents"]) == (165, 117, 48)
    assert month["transferred_cents"] == 117


async def pay_out_pending_now(app: FastAPI) -> int:
    async with app.state.sessionmaker() as session:
        return await pay_out_pending(session=session, gateway=app.state.stripe_gateway)


class TestWithoutStripe:
    @pytest.fixture
    async def app(
        self, make_settings: Callable[..., Settings], database_url: str
    ) -> AsyncIterator[FastAPI]:
        settings = make_settings(database_url=database_url, rate_limit_free=100_000)
        application = create_app(settings)
        async with application.router.lifespan_context(application):
            yield application

    async def test_paid_installs_are_503_and_free_ones_still_install(
        self, app: FastAPI, client: httpx.AsyncClient, market: Market, power: Account
    ) -> None:
        paid = await market.publish(price_cents=500)
        free = await market.publish()

        refused = await client.post(f"{PLUGINS}/{paid}/install", headers=power.auth)
        installed = await client.post(f"{PLUGINS}/{free}/install", headers=power.auth)
        onboarding = await client.post(f"{PLUGINS}/payouts/onboarding", headers=power.auth)

        assert refused.status_code == 503
        assert refused.json() == {
            "detail": "Billing is not configured on this server: set STRIPE_SECRET_KEY"
        }
        assert installed.status_code == 200
        assert onboarding.status_code == 503
        assert await rows(app, "SELECT count(*) FROM plugin_purchases") == [(0,)]


async def test_another_authors_earnings_are_not_shown(
    app: FastAPI, client: httpx.AsyncClient, market: Market, power: Account, stripe_fake: FakeStripe
) -> None:
    plugin_id = await market.publish(price_cents=100)
    await buy(client, stripe_fake, power, plugin_id)

    mine = await client.get(f"{PLUGINS}/earnings", headers=power.auth)

    assert mine.json() == {
        "currency": "usd",
        "months": [],
        "total_author_cents": 0,
        "payout_account": None,
    }
