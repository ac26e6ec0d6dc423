"""Two server processes on one database, one desktop connected to each: one run per slot.

Both processes run their scheduler every 0.2 s and both see the agent's device
connected, so every due slot is contended. The claim in PostgreSQL must give
each slot to exactly one of them.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from cryptography.fernet import Fernet

from app.core.database_urls import libpq_url
from devclient.agent_files import SharedFolders
from devclient.client import DeviceClient, register
from devclient.store import LocalStore
from tests.e2e.server_process import ServerProcess
from tests.llm.extraction import ExtractionScript
from tests.llm.scripted_openai import ScriptedLLM, scripted_llm

SLOTS = 3
QUIET_PASSES_S = 1.5  # about seven more passes of each scheduler after a slot's run


@pytest.fixture
async def model() -> AsyncIterator[tuple[ScriptedLLM, ExtractionScript]]:
    script = ExtractionScript()
    async with scripted_llm(script) as llm:
        yield llm, script


@pytest.fixture
async def two_servers(
    database_url: str, tmp_path: Path, model: tuple[ScriptedLLM, ExtractionScript]
) -> AsyncIterator[list[ServerProcess]]:
    llm, _ = model
    env = {
        "DATABASE_URL": database_url,
        "ENV": "dev",
        "JWT_SECRET": "two-instances-share-this-secret-0123456789",
        "ENCRYPTION_KEY": Fernet.generate_key().decode(),
        "LLM_MODEL": "openai/scripted",
        "LLM_API_BASE": llm.api_base,
        "LLM_API_KEY": "test-key",
        "LLM_MAX_RETRIES": "0",
        "BATCH_SCHEDULER_INTERVAL_S": "0.2",
        "BATCH_STALE_RUN_S": "60",
        # The test polls the run log every 50 ms, far past the free plan's 20 a minute.
        "RATE_LIMIT_FREE": "100000",
    }
    servers = [ServerProcess(data_dir=tmp_path / f"var-{n}", env=env) for n in range(2)]
    for server in servers:
        await asyncio.to_thread(server.start)
    try:
        yield servers
    finally:
        for server in servers:
            await asyncio.to_thread(server.stop)


async def runs(server: ServerProcess, token: str) -> list[dict[str, Any]]:
    async with httpx.AsyncClient(base_url=server.base_url) as http:
        response = await http.get(
            "/api/v1/agents/runs",
            params={"limit": 100},
            headers={"Authorization": f"Bearer {token}"},
        )
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


async def slot_done(server: ServerProcess, token: str, slot: int) -> None:
    """Wait until `slot` runs are logged and none is still going."""
    async with asyncio.timeout(20):
        while True:
            logged = await runs(server, token)
            if len(logged) >= slot and all(run["status"] != "running" for run in logged):
                return
            await asyncio.sleep(0.05)


async def test_two_instances_with_the_same_device_run_each_slot_exactly_once(
    two_servers: list[ServerProcess],
    database_url: str,
    tmp_path: Path,
    model: tuple[ScriptedLLM, ExtractionScript],
) -> None:
    llm, script = model
    first, second = two_servers
    folder = tmp_path / "shared"
    folder.mkdir()
    notes = folder / "notes.md"
    script.items["notes.md"] = {"tasks": [{"title": "Follow up"}]}
    tokens = await register(first.base_url, "ada@example.com", "a long passphrase")
    token = tokens["access_token"]
    async with httpx.AsyncClient(base_url=first.base_url) as http:
        created = await http.post(
            "/api/v1/agents/local",
            json={
                "name": "Notes",
                "device_id": "desk",
                "directory_paths": [str(folder)],
                "schedule_cron": "*/5 * * * *",
                "data_types": ["tasks"],
            },
            headers={"Authorization": f"Bearer {token}"},
        )
    assert created.status_code == 201, created.text
    agent_id = uuid.UUID(created.json()["id"])
    desktops = [
        await DeviceClient.connect(
            server=server.base_url,
            token=token,
            device_id="desk",
            store=LocalStore(tmp_path / f"desk-{n}.sqlite3"),
            shared_folders=SharedFolders([folder]),
        )
        for n, server in enumerate(two_servers)
    ]
    await asyncio.sleep(QUIET_PASSES_S)  # each hello's catch-up is over: nothing was due
    database = await asyncpg.connect(libpq_url(database_url))
    try:
        for slot in range(1, SLOTS + 1):
            notes.write_text(f"Slot {slot}: follow up with the client.\n")
            # The slot comes due while both schedulers are polling.
            await database.execute(
                "UPDATE batch_agents SET next_run_at = $1 WHERE id = $2",
                datetime.now(UTC) - timedelta(seconds=1),
                agent_id,
            )
            await slot_done(second, token, slot)
            await asyncio.sleep(QUIET_PASSES_S)

            assert len(await runs(first, token)) == slot, first.log() + second.log()
    finally:
        await database.close()
        for desktop in desktops:
            await desktop.close()

    logged = await runs(first, token)
    assert [(run["trigger"], run["status"]) for run in logged] == [("schedule", "success")] * SLOTS
    assert sum(len(desktop.agent_runs) for desktop in desktops) == SLOTS
    tasks = [row for desktop in desktops for row in desktop.store.rows("tasks")]
    assert [task["title"] for task in tasks] == ["Follow up"] * SLOTS
    assert len(llm.requests) == SLOTS
