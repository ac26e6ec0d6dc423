"""Review: only reviewers see the queue and decide; never on their own plugin; every
decision is kept."""

from __future__ import annotations

import httpx
from fastapi import FastAPI

from app.core.body_limit import ROUTE_BODY_LIMITS
from tests.billing.conftest import register
from tests.plugins.conftest import PLUGINS, Market, make_reviewer, manifest, review, rows, submit


async def test_non_reviewers_get_403_on_the_queue_and_decisions(
    app: FastAPI, client: httpx.AsyncClient, market: Market
) -> None:
    submitted = await submit(client, market.author, manifest())
    plugin_id = submitted.json()["id"]
    someone = await register(client)

    queue = await client.get(f"{PLUGINS}/review", headers=someone.auth)
    decided = await review(client, someone, plugin_id)
    own = await review(client, market.author, plugin_id)

    assert queue.status_code == 403
    assert decided.status_code == 403
    assert decided.json() == {
        "detail": "Only reviewers may do this (an operator grants the reviewer role)"
    }
    assert own.status_code == 403
    assert await rows(app, "SELECT count(*) FROM plugin_reviews") == [(0,)]


async def test_a_reviewer_does_not_review_their_own_plugin(
    app: FastAPI, client: httpx.AsyncClient, market: Market
) -> None:
    await make_reviewer(app, market.author)
    plugin_id = (await submit(client, market.author, manifest())).json()["id"]

    response = await review(client, market.author, plugin_id)

    assert response.status_code == 403
    assert response.json() == {"detail": "Reviewers do not review their own plugins"}


async def test_the_queue_shows_pending_versions_with_their_findings_and_every_decision_is_kept(
    app: FastAPI, client: httpx.AsyncClient, market: Market
) -> None:
    plugin_id = (await submit(client, market.author, manifest(name="Alpha"))).json()["id"]

    queue = (await client.get(f"{PLUGINS}/review", headers=market.reviewer.auth)).json()
    rejected = await review(client, market.reviewer, plugin_id, "reject")
    again = await review(client, market.reviewer, plugin_id, "approve")
    fixed = await submit(client, market.author, manifest(name="Alpha", version="1.0.1"))
    approved = await review(client, market.reviewer, plugin_id, "approve")
    unknown = await review(client, market.reviewer, "00000000-0000-0000-0000-000000000000")

    assert [item["id"] for item in queue] == [plugin_id]
    assert all(finding["passed"] for finding in queue[0]["checklist"])
    assert queue[0]["manifest"]["name"] == "Alpha"
    assert rejected.json()["status"] == "rejected"
    assert again.status_code == 409  # nothing waits for review any more
    assert fixed.status_code == 201
    assert approved.json()["status"] == "approved"
    assert unknown.status_code == 404
    decisions = await rows(
        app,
        "SELECT v.version, r.decision, r.notes FROM plugin_reviews r "
        "JOIN plugin_versions v ON v.id = r.version_id ORDER BY r.created_at",
    )
    assert decisions == [("1.0.0", "reject", "looked at it"), ("1.0.1", "approve", "looked at it")]
    assert (await client.get(f"{PLUGINS}/review", headers=market.reviewer.auth)).json() == []


async def test_a_review_body_of_the_wrong_shape_is_422(
    app: FastAPI, client: httpx.AsyncClient, market: Market
) -> None:
    plugin_id = (await submit(client, market.author, manifest())).json()["id"]
    bodies = [
        {"decision": "maybe"},
        {"decision": "approve", "notes": 5},
        {"decision": "approve", "notes": "x" * 4001},
        {"decision": "approve", "extra": True},
    ]
    for body in bodies:
        response = await client.post(
            f"{PLUGINS}/{plugin_id}/review", json=body, headers=market.reviewer.auth
        )
        assert response.status_code == 422, body
    assert await rows(app, "SELECT count(*) FROM plugin_reviews") == [(0,)]


async def test_a_review_body_over_its_limit_is_413_before_it_is_read(
    app: FastAPI, client: httpx.AsyncClient, market: Market
) -> None:
    plugin_id = (await submit(client, market.author, manifest())).json()["id"]
    limit = ROUTE_BODY_LIMITS["/plugins/{id}/review"]

    response = await client.post(
        f"{PLUGINS}/{plugin_id}/review",
        content=b"{}",
        headers={
            **market.reviewer.auth,
            "Content-Type": "application/json",
            "Content-Length": str(limit + 1),
        },
    )

    assert response.status_code == 413
    assert response.json() == {"detail": f"Request body is limited to {limit} bytes on this route"}
