"""Batch agents: the server's time per processed file, and one scheduler pass over many agents.

    .venv/bin/python -m benchmarks.batch [--files 200] [--agents 10000] [--passes 200] [--quick]

1. Per file. The real server (`python -m app serve`, embedded PostgreSQL) runs
   one local agent over `--files` Markdown files that a devclient desktop reads
   from a temporary folder; the model is the scripted zero-latency server on
   loopback, finding one task per file. Timed: the server process's own CPU
   (psutil; PostgreSQL, the desktop and the model excluded), divided by the
   files. Baseline, same run: the same agent run again over the unchanged
   files, which are only received, hashed and skipped (no model call, no
   insert); the difference is what extraction and inserting cost per file.
2. One scheduler pass (`BatchScheduler.run_pass`: refresh this instance's
   runs, recover orphans, claim what is due on the connected desktops) with
   `--agents` enabled agents in the table, 1,000 users, 500 desktops
   connected, nothing due. Target: under 50 ms p50. Baseline, same run: the
   same pass with PostgreSQL's index scans switched off.

Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psutil
from cryptography.fernet import Fernet
from sqlalchemy import insert, text
from sqlalchemy.ext.asyncio import create_async_engine

import app  # noqa: F401 - sets LITELLM_LOCAL_MODEL_COST_MAP before anything imports litellm
from agents.extraction import extraction_model
from agents.llm import ModelConfig
from app.auth.models import User
from app.batch.models import AgentType, BatchAgent
from app.batch.scheduled import BatchScheduler
from app.core import migrations
from app.core.database import create_engine, create_sessionmaker
from app.core.embedded_db import EmbeddedPostgres
from app.core.keys import MasterKeyring
from app.core.settings import Settings
from app.device.link import DeviceLink
from app.device.protocol import DeviceProtocol, ProtocolLimits
from app.device.registry import DeviceRegistry
from app.usage.recorder import UsageRecorder
from devclient.agent_files import SharedFolders
from devclient.client import DeviceClient, register
from devclient.store import LocalStore
from protocol.frames import ServerFrame
from tests.e2e.server_process import ServerProcess
from tests.llm.extraction import ExtractionScript
from tests.llm.scripted_openai import scripted_llm

PASSWORD = "a long passphrase"  # noqa: S105 - a benchmark account on a throwaway database
USERS = 1000
CONNECTED = 500
RUN_TIMEOUT_S = 600.0


# --- 1. per processed file ------------------------------------------------------------------


def server_cpu_s(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


async def run_and_wait(http: httpx.AsyncClient, agent_id: str) -> dict[str, Any]:
    started = await http.post(f"/api/v1/agents/{agent_id}/run")
    assert started.status_code == 202, started.text
    run_id = started.json()["run_id"]
    async with asyncio.timeout(RUN_TIMEOUT_S):
        while True:
            page = (await http.get("/api/v1/agents/runs", params={"limit": 1})).json()
            [run] = page["items"]
            if run["id"] == run_id and run["status"] != "running":
                return dict(run)
            await asyncio.sleep(0.05)


async def per_file(files: int, workdir: Path) -> tuple[float, float, dict[str, Any]]:
    """Server CPU ms per file: new files, then the same files unchanged."""
    folder = workdir / "shared"
    folder.mkdir(parents=True)
    for n in range(files):
        note = f"# Note {n}\n\nCall client {n} about the offer.\n"
        (folder / f"note-{n:04d}.md").write_text(note)
    script = ExtractionScript()
    for n in range(files):
        script.items[f"note-{n:04d}.md"] = {"tasks": [{"title": f"Call client {n}"}]}
    async with scripted_llm(script) as llm:
        server = ServerProcess(
            data_dir=workdir / "var",
            env={
                "LLM_MODEL": "openai/gpt-4o-mini",
                "LLM_API_BASE": llm.api_base,
                "LLM_API_KEY": "bench-key",
                "LOG_LEVEL": "WARNING",
                "BATCH_MAX_FILES_PER_RUN": str(files),
                # Each insert is one tool call; hundreds of them are no flood here.
                "WS_MESSAGES_PER_MINUTE": "1000000",
                # The run log is polled every 50 ms, past the free plan's 20 requests a minute.
                "RATE_LIMIT_FREE": "1000000",
            },
        )
        await asyncio.to_thread(server.start)
        assert server.process is not None
        process = psutil.Process(server.process.pid)
        try:
            tokens = await register(server.base_url, "bench@example.com", PASSWORD)
            headers = {"Authorization": f"Bearer {tokens['access_token']}"}
            desktop = await DeviceClient.connect(
                server=server.base_url,
                token=tokens["access_token"],
                device_id="bench-desk",
                store=LocalStore(workdir / "desk.sqlite3"),
                shared_folders=SharedFolders([folder]),
            )
            async with (
                desktop,
                httpx.AsyncClient(base_url=server.base_url, headers=headers, timeout=30) as http,
            ):
                created = await http.post(
                    "/api/v1/agents/local",
                    json={
                        "name": "Bench",
                        "device_id": "bench-desk",
                        "directory_paths": [str(folder)],
                        "schedule_cron": "0 9 * * 1",
                        "data_types": ["tasks"],
                    },
                )
                agent_id = created.json()["id"]
                before = server_cpu_s(process)
                first = await run_and_wait(http, agent_id)
                between = server_cpu_s(process)
                second = await run_and_wait(http, agent_id)
                after = server_cpu_s(process)
        finally:
            await asyncio.to_thread(server.stop)
    assert first["items_created"] == files, first
    assert second["items_created"] == 0, second
    return (between - before) * 1000 / files, (after - between) * 1000 / files, first


# --- 2. one scheduler pass ---------------------------------------------------------------


async def _send(frame: ServerFrame) -> None:
    return None


async def _close(code: int, reason: str) -> None:
    return None


async def seed_agents(database_url: str, keyring: MasterKeyring, agents: int) -> list[uuid.UUID]:
    """`agents` enabled agents over `USERS` users, all due within the next week."""
    engine = create_engine(database_url)
    rng = random.Random(5)
    users = [uuid.uuid4() for _ in range(USERS)]
    now = datetime.now(UTC)
    async with engine.begin() as conn:
        await conn.execute(
            insert(User),
            [
                {
                    "id": user,
                    "email": f"u{n}@example.com",
                    "password_hash": "!",
                    "wrapped_data_key": keyring.new_wrapped_data_key(),
                }
                for n, user in enumerate(users)
            ],
        )
        await conn.execute(
            insert(BatchAgent),
            [
                {
                    "id": uuid.uuid4(),
                    "user_id": users[n % USERS],
                    "agent_type": AgentType.LOCAL_DIRECTORY.value,
                    "device_id": f"desk-{n % 3}",
                    "settings_encrypted": b"sealed",
                    "schedule_cron": "*/5 * * * *",
                    "timezone": "UTC",
                    "enabled": True,
                    "next_run_at": now + timedelta(seconds=rng.uniform(60, 7 * 24 * 3600)),
                }
                for n in range(agents)
            ],
        )
        await conn.execute(text("ANALYZE"))
    await engine.dispose()
    return users


def scheduler(
    database_url: str, keyring: MasterKeyring, users: list[uuid.UUID], *, indexes: bool
) -> BatchScheduler:
    engine = (
        create_engine(database_url)
        if indexes
        else create_async_engine(
            database_url,
            connect_args={
                "server_settings": {"enable_indexscan": "off", "enable_bitmapscan": "off"}
            },
        )
    )
    registry = DeviceRegistry(max_per_user=5, max_total=CONNECTED)
    for user in users[:CONNECTED]:
        protocol = DeviceProtocol(limits=ProtocolLimits())
        link = DeviceLink(
            user_id=user, device_id="desk-0", protocol=protocol, send=_send, close=_close
        )
        registry.bind(link)
    settings = Settings(_env_file=None, database_url=database_url, batch_stale_run_s=300)
    sessionmaker = create_sessionmaker(engine)
    return BatchScheduler(
        settings=settings,
        sessionmaker=sessionmaker,
        keyring=keyring,
        registry=registry,
        # Not started: these desktops send no files, so no model is called and nothing stored.
        usage=UsageRecorder(sessionmaker),
        model=extraction_model(ModelConfig(model="openai/gpt-4o-mini")),
    )


async def timed(passes: int, run: Callable[[], Awaitable[object]]) -> list[float]:
    samples = []
    for _ in range(passes + 10):
        started = time.perf_counter()
        await run()
        samples.append((time.perf_counter() - started) * 1000)
    return samples[10:]  # the first passes warm the pool and the caches


async def scheduler_pass(agents: int, passes: int, workdir: Path) -> tuple[float, float, str]:
    database = EmbeddedPostgres(workdir / "pg")
    await asyncio.to_thread(database.start)
    try:
        await asyncio.to_thread(migrations.upgrade, database.database_url)
        keyring = MasterKeyring(Fernet.generate_key().decode())
        users = await seed_agents(database.database_url, keyring, agents)
        indexed = scheduler(database.database_url, keyring, users, indexes=True)
        scanned = scheduler(database.database_url, keyring, users, indexes=False)
        with_index = await timed(passes, indexed.run_pass)
        without = await timed(passes, scanned.run_pass)
        plan = await claim_plan(database.database_url)
    finally:
        await asyncio.to_thread(database.stop)
    return statistics.median(with_index), statistics.median(without), plan


async def claim_plan(database_url: str) -> str:
    """How PostgreSQL finds due agents (the claim's WHERE), as EXPLAIN says."""
    engine = create_engine(database_url)
    async with engine.connect() as conn:
        rows = await conn.execute(
            text(
                "EXPLAIN SELECT id FROM batch_agents WHERE enabled AND next_run_at <= now()"
                " ORDER BY next_run_at LIMIT 200 FOR UPDATE SKIP LOCKED"
            )
        )
        plan = "\n".join(f"    {row[0]}" for row in rows)
    await engine.dispose()
    return plan


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--files", type=int, default=200)
    parser.add_argument("--agents", type=int, default=10_000)
    parser.add_argument("--passes", type=int, default=200)
    parser.add_argument("--quick", action="store_true", help="50 files, 50 passes")
    args = parser.parse_args()
    files, passes = (50, 50) if args.quick else (args.files, args.passes)

    with tempfile.TemporaryDirectory() as tmp:
        new_ms, unchanged_ms, run = await per_file(files, Path(tmp) / "files")
        with_index, without, plan = await scheduler_pass(args.agents, passes, Path(tmp))

    print("batch run: python -m app serve, devclient reading real files, scripted model")
    print(f"  {files} new files, one task each ({run['items_created']} inserted)")
    print(f"  server CPU per new file       : {new_ms:6.2f} ms")
    print(f"  server CPU per unchanged file : {unchanged_ms:6.2f} ms   (baseline: only skipped)")
    print(f"  extraction + insert per file  : {new_ms - unchanged_ms:6.2f} ms")
    print(
        f"scheduler pass, {args.agents} enabled agents, {USERS} users, "
        f"{CONNECTED} desktops connected, nothing due, {passes} passes"
    )
    print(f"  with the indexes    : p50 {with_index:6.2f} ms   (target < 50 ms)")
    print(f"  index scans off     : p50 {without:6.2f} ms")
    print("  how due agents are found:")
    print(plan)


if __name__ == "__main__":
    asyncio.run(main())
