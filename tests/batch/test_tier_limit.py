"""The plan's limit on enabled batch agents, and what a downgrade does to agents over it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text

from app.core.settings import Settings
from tests.batch.provider_fakes import ProviderFakes, connect, provider_settings
from tests.batch.test_agents_api import AGENTS, agent_body
from tests.billing.conftest import Account, deliver, register, subscribe, tier_of
from tests.billing.fake_stripe import PRICES, FakeStripe, billing_settings

SUBSCRIPTION = "/api/v1/billing/subscription"
CLOUD_AGENTS = "/api/v1/agents/cloud"
FREE_LIMIT = "Your free plan allows 2 enabled batch agents; disable one or upgrade"


@pytest.fixture
def settings(
    make_settings: Callable[..., Settings],
    database_url: str,
    stripe_fake: FakeStripe,
    providers: ProviderFakes,
) -> Settings:
    # Request rates out of the way: a downgrade lowers the rate too, and these tests
    # make more requests in a minute than the free plan's 20.
    return make_settings(
        database_url=database_url,
        rate_limit_free=1000,
        rate_limit_pro=1000,
        rate_limit_power=1000,
        **billing_settings(stripe_fake),
        **provider_settings(providers.base_url),
    )


async def set_tier(app: FastAPI, account: Account, tier: str) -> None:
    async with app.state.engine.begin() as conn:
        await conn.execute(
            text("UPDATE users SET tier = :tier WHERE id = :id"),
            {"tier": tier, "id": account.user_id},
        )


async def create(
    client: httpx.AsyncClient, account: Account, number: int, **fields: Any
) -> httpx.Response:
    return await client.post(
        AGENTS, json=agent_body(name=f"Agent {number}", **fields), headers=account.auth
    )


async def create_enabled(client: httpx.AsyncClient, account: Account, count: int) -> list[str]:
    """`count` enabled agents, oldest first: their ids."""
    ids = []
    for number in range(1, count + 1):
        response = await create(client, account, number)
        assert response.status_code == 201, response.text
        ids.append(response.json()["id"])
    return ids


async def create_cloud(
    client: httpx.AsyncClient, account: Account, token: str, number: int, **fields: Any
) -> httpx.Response:
    body = {
        "provider": "gmail",
        "name": f"Mail {number}",
        "encrypted_token": token,
        "schedule_cron": "0 9 * * *",
        **fields,
    }
    return await client.post(CLOUD_AGENTS, json=body, headers=account.auth)


async def enabled_names(client: httpx.AsyncClient, account: Account) -> list[str]:
    agents = (await client.get(AGENTS, headers=account.auth)).json()
    return [agent["name"] for agent in agents if agent["enabled"]]


async def enabled_cloud_names(client: httpx.AsyncClient, account: Account) -> list[str]:
    agents = (await client.get(CLOUD_AGENTS, headers=account.auth)).json()
    return [agent["name"] for agent in agents if agent["enabled"]]


async def test_a_free_user_may_enable_two_agents_and_disabling_always_works(
    client: httpx.AsyncClient,
) -> None:
    ada = await register(client)
    first, second = await create_enabled(client, ada, 2)

    third = await create(client, ada, 3)
    assert (third.status_code, third.json()) == (403, {"detail": FREE_LIMIT})
    # Created disabled, it is stored; switching it on is past the limit all the same.
    disabled = await create(client, ada, 3, enabled=False)
    assert disabled.status_code == 201, disabled.text
    disabled_id = disabled.json()["id"]
    switched_on = await client.put(
        f"{AGENTS}/{disabled_id}", json={"enabled": True, "name": "Renamed"}, headers=ada.auth
    )
    assert (switched_on.status_code, switched_on.json()) == (403, {"detail": FREE_LIMIT})
    agents = (await client.get(AGENTS, headers=ada.auth)).json()
    assert [(a["name"], a["enabled"]) for a in agents] == [
        ("Agent 1", True),
        ("Agent 2", True),
        ("Agent 3", False),  # the refused change changed nothing
    ]

    # An enabled agent may still change (a new schedule is no new place taken).
    rescheduled = await client.put(
        f"{AGENTS}/{second}", json={"schedule_cron": "0 10 * * *"}, headers=ada.auth
    )
    assert rescheduled.status_code == 200, rescheduled.text
    # Disabling frees a place, which the third agent then takes.
    off = await client.put(f"{AGENTS}/{first}", json={"enabled": False}, headers=ada.auth)
    assert (off.status_code, off.json()["enabled"]) == (200, False)
    on = await client.put(f"{AGENTS}/{disabled_id}", json={"enabled": True}, headers=ada.auth)
    assert (on.status_code, on.json()["enabled"]) == (200, True)
    assert await enabled_names(client, ada) == ["Agent 2", "Agent 3"]
    # Disabling works at the limit too, and another user's agents count for nobody else.
    assert (
        await client.put(f"{AGENTS}/{second}", json={"enabled": False}, headers=ada.auth)
    ).status_code == 200
    bob = await register(client)
    assert len(await create_enabled(client, bob, 2)) == 2


async def test_cloud_agents_count_against_the_same_limit(client: httpx.AsyncClient) -> None:
    ada = await register(client)
    token = await connect(client, ada.auth, "gmail")

    cloud = await create_cloud(client, ada, token, 1)
    local = await create(client, ada, 1)
    third_cloud = await create_cloud(client, ada, token, 2)
    third_local = await create(client, ada, 2)

    assert cloud.status_code == 201, cloud.text
    assert local.status_code == 201, local.text
    assert (third_cloud.status_code, third_cloud.json()) == (403, {"detail": FREE_LIMIT})
    assert (third_local.status_code, third_local.json()) == (403, {"detail": FREE_LIMIT})
    # Switching a disabled cloud agent on is the same refusal; switching one off frees a place.
    spare = await create_cloud(client, ada, token, 3, enabled=False)
    assert spare.status_code == 201, spare.text
    spare_id = spare.json()["id"]
    on = await client.put(f"{CLOUD_AGENTS}/{spare_id}", json={"enabled": True}, headers=ada.auth)
    assert (on.status_code, on.json()) == (403, {"detail": FREE_LIMIT})
    off = await client.put(
        f"{AGENTS}/{local.json()['id']}", json={"enabled": False}, headers=ada.auth
    )
    assert off.status_code == 200, off.text
    on = await client.put(f"{CLOUD_AGENTS}/{spare_id}", json={"enabled": True}, headers=ada.auth)
    assert (on.status_code, on.json()["enabled"]) == (200, True)
    assert await enabled_cloud_names(client, ada) == ["Mail 1", "Mail 3"]
    assert await enabled_names(client, ada) == []


async def test_concurrent_local_and_cloud_creates_never_squeeze_past_the_limit(
    client: httpx.AsyncClient,
) -> None:
    ada = await register(client)
    token = await connect(client, ada.auth, "gmail")

    responses = await asyncio.gather(
        *(create(client, ada, n) for n in range(1, 4)),
        *(create_cloud(client, ada, token, n) for n in range(1, 4)),
    )

    statuses = sorted(response.status_code for response in responses)
    assert statuses == [201, 201, 403, 403, 403, 403], [r.text for r in responses]
    enabled = [*await enabled_names(client, ada), *await enabled_cloud_names(client, ada)]
    assert len(enabled) == 2


async def test_pro_allows_ten_enabled_agents(app: FastAPI, client: httpx.AsyncClient) -> None:
    ada = await register(client)
    await set_tier(app, ada, "pro")
    await create_enabled(client, ada, 10)

    eleventh = await create(client, ada, 11)

    assert (eleventh.status_code, eleventh.json()) == (
        403,
        {"detail": "Your pro plan allows 10 enabled batch agents; disable one or upgrade"},
    )


async def test_power_has_no_limit(app: FastAPI, client: httpx.AsyncClient) -> None:
    ada = await register(client)
    await set_tier(app, ada, "power")

    await create_enabled(client, ada, 12)

    assert len(await enabled_names(client, ada)) == 12


async def test_concurrent_creates_never_squeeze_past_the_limit(client: httpx.AsyncClient) -> None:
    ada = await register(client)

    responses = await asyncio.gather(*(create(client, ada, n) for n in range(1, 6)))

    statuses = sorted(response.status_code for response in responses)
    assert statuses == [201, 201, 403, 403, 403], [r.text for r in responses]
    assert len(await enabled_names(client, ada)) == 2


async def test_concurrent_enables_never_squeeze_past_the_limit(
    client: httpx.AsyncClient,
) -> None:
    ada = await register(client)
    ids = []
    for number in range(1, 6):
        response = await create(client, ada, number, enabled=False)
        assert response.status_code == 201, response.text
        ids.append(response.json()["id"])

    responses = await asyncio.gather(
        *(client.put(f"{AGENTS}/{i}", json={"enabled": True}, headers=ada.auth) for i in ids)
    )

    assert sorted(r.status_code for r in responses) == [200, 200, 403, 403, 403]
    assert len(await enabled_names(client, ada)) == 2


async def test_a_downgrade_disables_the_newest_agents_over_the_new_limit(
    client: httpx.AsyncClient, stripe_fake: FakeStripe
) -> None:
    ada = await register(client)
    subscription_id = await subscribe(client, stripe_fake, ada, "power")
    await create_enabled(client, ada, 12)
    spare = await create(client, ada, 13, enabled=False)
    assert spare.status_code == 201, spare.text
    now = int(time.time())

    # A signed portal change to pro: 10 may stay enabled, the 2 newest are switched off.
    to_pro = stripe_fake.subscription_event(
        subscription_id, "updated", created=now + 10, price=PRICES["pro"]
    )
    assert (await deliver(client, to_pro)).status_code == 200

    assert await tier_of(client, ada) == "pro"
    assert await enabled_names(client, ada) == [f"Agent {n}" for n in range(1, 11)]
    body = (await client.get(SUBSCRIPTION, headers=ada.auth)).json()
    assert body["restrictions"] == [
        {
            "kind": "batch_agents",
            "detail": "3 of your 13 batch agents are disabled: the pro plan allows 10 enabled;"
            " upgrade to enable more",
        }
    ]

    # The subscription ends: free keeps the 2 oldest enabled; nothing is deleted.
    deleted = stripe_fake.subscription_event(subscription_id, "deleted", created=now + 20)
    assert (await deliver(client, deleted)).status_code == 200

    assert await tier_of(client, ada) == "free"
    agents = (await client.get(AGENTS, headers=ada.auth)).json()
    assert len(agents) == 13
    assert [a["name"] for a in agents if a["enabled"]] == ["Agent 1", "Agent 2"]
    assert all(a["next_run_at"] is None for a in agents if not a["enabled"])
    body = (await client.get(SUBSCRIPTION, headers=ada.auth)).json()
    assert body["restrictions"] == [
        {
            "kind": "batch_agents",
            "detail": "11 of your 13 batch agents are disabled: the free plan allows 2 enabled;"
            " upgrade to enable more",
        }
    ]
    # The limit holds after the downgrade; a disabled agent is still the user's to edit.
    newest = agents[-2]["id"]
    assert (
        await client.put(f"{AGENTS}/{newest}", json={"enabled": True}, headers=ada.auth)
    ).json() == {"detail": FREE_LIMIT}
    renamed = await client.put(f"{AGENTS}/{newest}", json={"name": "Kept"}, headers=ada.auth)
    assert (renamed.status_code, renamed.json()["enabled"]) == (200, False)


async def test_a_downgrade_disables_cloud_agents_too(
    client: httpx.AsyncClient, stripe_fake: FakeStripe
) -> None:
    ada = await register(client)
    subscription_id = await subscribe(client, stripe_fake, ada, "pro")
    token = await connect(client, ada.auth, "gmail")
    assert (await create(client, ada, 1)).status_code == 201
    for number in (1, 2):
        created = await create_cloud(client, ada, token, number)
        assert created.status_code == 201, created.text

    ended = stripe_fake.subscription_event(subscription_id, "deleted", created=int(time.time()))
    assert (await deliver(client, ended)).status_code == 200

    # Free keeps the two oldest of both kinds together: the local agent and the first mail agent.
    assert await tier_of(client, ada) == "free"
    assert await enabled_names(client, ada) == ["Agent 1"]
    cloud = (await client.get(CLOUD_AGENTS, headers=ada.auth)).json()
    assert [(a["name"], a["enabled"], a["next_run_at"] is None) for a in cloud] == [
        ("Mail 1", True, False),
        ("Mail 2", False, True),
    ]
    body = (await client.get(SUBSCRIPTION, headers=ada.auth)).json()
    assert body["restrictions"] == [
        {
            "kind": "batch_agents",
            "detail": "1 of your 3 batch agents is disabled: the free plan allows 2 enabled;"
            " upgrade to enable more",
        }
    ]


async def test_an_upgrade_disables_nothing_and_a_user_within_the_limit_has_no_restriction(
    client: httpx.AsyncClient, stripe_fake: FakeStripe
) -> None:
    ada = await register(client)
    await create_enabled(client, ada, 2)
    assert (await create(client, ada, 3, enabled=False)).status_code == 201
    before = (await client.get(SUBSCRIPTION, headers=ada.auth)).json()

    await subscribe(client, stripe_fake, ada, "pro")

    assert before["restrictions"] == [
        {
            "kind": "batch_agents",
            "detail": "1 of your 3 batch agents is disabled: the free plan allows 2 enabled;"
            " upgrade to enable more",
        }
    ]
    assert await enabled_names(client, ada) == ["Agent 1", "Agent 2"]
    assert (await client.get(SUBSCRIPTION, headers=ada.auth)).json()["restrictions"] == []
    third = (await client.get(AGENTS, headers=ada.auth)).json()[2]["id"]
    on = await client.put(f"{AGENTS}/{third}", json={"enabled": True}, headers=ada.auth)
    assert (on.status_code, on.json()["enabled"]) == (200, True)
