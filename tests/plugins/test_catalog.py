"""The catalog: approved plugins only, full-text search, filters, sorts, stable pages,
and who sees an unapproved plugin."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from fastapi import FastAPI

from tests.billing.conftest import Account, register
from tests.plugins.conftest import PLUGINS, Market, manifest, rows, submit, user_on


async def listing(client: httpx.AsyncClient, account: Account, **params: Any) -> dict[str, Any]:
    response = await client.get(PLUGINS, params=params, headers=account.auth)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def names(page: dict[str, Any]) -> list[str]:
    return [plugin["name"] for plugin in page["plugins"]]


async def test_only_approved_plugins_are_listed_and_search_filter_use_full_text(
    app: FastAPI, client: httpx.AsyncClient, market: Market
) -> None:
    await market.publish(name="Invoice Helper", description="Creates invoices from tasks")
    await market.publish(
        name="Standup", description="Summarises yesterday's meetings", category="writing"
    )
    await market.publish(name="Timer", description="Tracks time spent", category="utilities")
    pending = await submit(
        client, market.author, manifest(name="Hidden", description="Invoicing, unreviewed")
    )
    assert pending.status_code == 201
    free = await register(client)  # browsing is open to every signed-in user

    everything = await listing(client, free)
    invoices = await listing(client, free, q="invoicing")  # stemmed: invoices ~ invoicing
    meeting = await listing(client, free, q="summarising meeting")
    writing = await listing(client, free, category="writing")
    both = await listing(client, free, q="tracks", category="writing")
    nonsense = await listing(client, free, q="!!! & | ( ::")

    assert everything["total"] == 3
    assert "Hidden" not in names(everything)
    assert names(invoices) == ["Invoice Helper"]
    assert names(meeting) == ["Standup"]
    assert names(writing) == ["Standup"]
    assert both == {"plugins": [], "total": 0, "page": 1}
    assert nonsense["total"] == 0


async def test_search_uses_the_gin_index(app: FastAPI) -> None:
    indexes = await rows(
        app,
        "SELECT indexdef FROM pg_indexes WHERE tablename = 'plugin_versions' "
        "AND indexname = 'ix_plugin_versions_search'",
    )
    assert "USING gin (search)" in indexes[0][0]


async def test_sorting_by_installs_rating_and_newest_pages_without_repeats_or_gaps(
    app: FastAPI, client: httpx.AsyncClient, market: Market
) -> None:
    ids = [await market.publish(name=f"Plugin {n:02d}") for n in range(7)]
    # Equal counts everywhere but two: the tie-breaker (id) decides the rest.
    await rows(
        app,
        "UPDATE plugins SET install_count = 5, rating_count = 2, rating_sum = 10 WHERE id = :id",
        id=ids[3],
    )
    await rows(
        app,
        "UPDATE plugins SET install_count = 9, rating_count = 1, rating_sum = 3 WHERE id = :id",
        id=ids[5],
    )
    viewer = await register(client)

    for sort in ("installs", "rating", "newest"):
        seen: list[str] = []
        for page in (1, 2, 3, 4):
            body = await listing(client, viewer, sort=sort, page=page, limit=2)
            assert body["total"] == 7
            assert body["page"] == page
            seen += [plugin["id"] for plugin in body["plugins"]]
        assert sorted(seen) == sorted(ids), sort  # each exactly once
        if sort == "installs":
            assert seen[:2] == [ids[5], ids[3]]
        if sort == "rating":
            assert seen[:2] == [ids[3], ids[5]]  # 5.0 before 3.0; unrated last
        if sort == "newest":
            assert seen[0] == ids[-1]


async def test_an_unapproved_plugin_is_404_except_to_its_author_and_reviewers(
    app: FastAPI, client: httpx.AsyncClient, market: Market
) -> None:
    submitted = await submit(client, market.author, manifest(name="Secret"))
    plugin_id = submitted.json()["id"]
    stranger = await user_on(app, client, "power")

    seen_by = {
        "author": await client.get(f"{PLUGINS}/{plugin_id}", headers=market.author.auth),
        "reviewer": await client.get(f"{PLUGINS}/{plugin_id}", headers=market.reviewer.auth),
        "stranger": await client.get(f"{PLUGINS}/{plugin_id}", headers=stranger.auth),
    }

    assert seen_by["author"].json()["status"] == "pending_review"
    assert seen_by["reviewer"].status_code == 200
    assert seen_by["stranger"].status_code == 404
    assert seen_by["stranger"].json() == {"detail": "Plugin not found"}


async def test_the_tier_gate_refuses_installs_below_power_naming_the_plans(
    app: FastAPI, client: httpx.AsyncClient, market: Market
) -> None:
    plugin_id = await market.publish()
    refused = {}
    for tier in ("free", "pro", "power", "team"):
        account = await user_on(app, client, tier)
        answers = await asyncio.gather(
            client.get(PLUGINS, headers=account.auth),
            client.post(f"{PLUGINS}/{plugin_id}/install", headers=account.auth),
            client.post(f"{PLUGINS}/{plugin_id}/rating", json={"stars": 5}, headers=account.auth),
        )
        refused[tier] = [answer.status_code for answer in answers]
        if tier == "free":
            assert answers[1].json() == {
                "detail": "Your plan (free) does not include the plugin marketplace; "
                "upgrade to power or team to use it"
            }

    assert refused["free"] == [200, 403, 403]
    assert refused["pro"] == [200, 403, 403]
    assert refused["power"][:2] == [200, 200]
    assert refused["team"][:2] == [200, 200]
