"""The liveness and readiness probes: `/health/live` and `/health/ready`."""

from __future__ import annotations

import asyncio

import httpx
from alembic.script import ScriptDirectory

from app.core import migrations


async def test_live_and_ready_answer_ok_on_a_migrated_database(client: httpx.AsyncClient) -> None:
    live = await client.get("/api/v1/health/live")
    ready = await client.get("/api/v1/health/ready")

    assert live.status_code == 200
    assert live.json() == {"status": "ok"}
    assert ready.status_code == 200
    assert ready.json() == {"status": "ok", "reason": None}


async def test_live_answers_while_the_database_is_down_and_ready_says_why_not(
    client_without_database: httpx.AsyncClient,
) -> None:
    live = await client_without_database.get("/api/v1/health/live")
    ready = await client_without_database.get("/api/v1/health/ready")

    assert live.status_code == 200
    assert live.json() == {"status": "ok"}
    assert ready.status_code == 503
    assert ready.json() == {"status": "not_ready", "reason": "the database does not answer"}
    assert int(ready.headers["Retry-After"]) >= 1


async def test_ready_is_503_until_the_database_is_at_the_shipped_head(
    client: httpx.AsyncClient, database_url: str
) -> None:
    head = migrations.head_revision()
    assert head is not None
    previous = ScriptDirectory(str(migrations.SCRIPT_LOCATION)).get_revision(head).down_revision

    await asyncio.to_thread(migrations.downgrade, database_url, "-1")
    behind = await client.get("/api/v1/health/ready")
    await asyncio.to_thread(migrations.downgrade, database_url, "base")
    unmigrated = await client.get("/api/v1/health/ready")
    await asyncio.to_thread(migrations.upgrade, database_url)
    caught_up = await client.get("/api/v1/health/ready")

    assert behind.status_code == 503
    assert behind.json() == {
        "status": "not_ready",
        "reason": f"the database is at migration {previous}; this server needs {head}",
    }
    assert unmigrated.status_code == 503
    assert (
        unmigrated.json()["reason"]
        == f"the database is at migration none; this server needs {head}"
    )
    assert caught_up.status_code == 200
