"""Device WebSocket figures: tool round-trip overhead and idle-connection memory.

    .venv/bin/python -m benchmarks.device_ws [--calls 2000] [--devices 2000]

1. Round trip: the server sends `tool_call`s through `CallTarget.execute` to a
   devclient that answers at once, over loopback. Beside it, in the same run,
   the floor: a bare `websockets` echo server and client exchanging a frame of
   the same size. The difference is what the server's own code adds.
2. Idle devices: a real server process (`python -m app serve`, embedded
   PostgreSQL) holds `--devices` greeted connections with heartbeats running
   (ping every second); its resident memory is read before and after.

Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import statistics
import tempfile
import time
import uuid
from pathlib import Path

import httpx
import psutil
from cryptography.fernet import Fernet
from websockets.asyncio.client import connect as ws_connect
from websockets.asyncio.server import serve as ws_serve

from app.core.embedded_db import EmbeddedPostgres
from app.core.settings import Settings
from app.device.calls import CallTarget
from app.device.registry import DeviceRegistry
from app.main import create_app
from devclient.client import DeviceClient, register
from devclient.store import LocalStore
from tests.databases import TestDatabases
from tests.e2e.live_server import serve
from tests.e2e.server_process import ServerProcess


def percentiles(samples_ns: list[int]) -> tuple[float, float]:
    ordered = sorted(samples_ns)
    p50 = statistics.median(ordered) / 1000
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] / 1000
    return p50, p99


async def echo_round_trips(calls: int, frame: str) -> list[int]:
    """The floor: one frame out and one back over loopback with nothing in between."""

    async def echo(ws: object) -> None:
        async for message in ws:  # type: ignore[attr-defined]
            await ws.send(message)  # type: ignore[attr-defined]

    async with ws_serve(echo, "127.0.0.1", 0) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        async with ws_connect(f"ws://127.0.0.1:{port}", ping_interval=None) as ws:
            samples = []
            for _ in range(calls):
                started = time.perf_counter_ns()
                await ws.send(frame)
                await ws.recv()
                samples.append(time.perf_counter_ns() - started)
    return samples


async def tool_round_trips(calls: int, workdir: Path) -> list[int]:
    """`CallTarget.execute` to a devclient answering a `get` from its SQLite store."""
    server = EmbeddedPostgres(workdir)
    await asyncio.to_thread(server.start)
    try:
        databases = TestDatabases(server.database_url)
        await databases.prepare_template()
        database_url = await databases.create()
        settings = Settings(
            _env_file=None,
            database_url=database_url,
            data_dir=workdir,
            jwt_secret=secrets.token_urlsafe(32),
            encryption_key=Fernet.generate_key().decode(),
            bcrypt_rounds=4,
        )
        app = create_app(settings)
        async with serve(app, settings) as base_url:
            tokens = await register(base_url, "bench@example.com", "a long passphrase")
            async with httpx.AsyncClient(base_url=base_url) as http:
                me = await http.get(
                    "/api/v1/auth/me",
                    headers={"Authorization": f"Bearer {tokens['access_token']}"},
                )
            user_id = uuid.UUID(me.json()["id"])
            store = LocalStore(workdir / "desk.sqlite3")
            task = store.execute(action="insert", table="tasks", data={"title": "Benchmark"})
            async with await DeviceClient.connect(
                server=base_url, token=tokens["access_token"], device_id="desk", store=store
            ):
                registry: DeviceRegistry = app.state.device_registry
                while (link := registry.device(user_id)) is None:  # noqa: ASYNC110 - no event to await
                    await asyncio.sleep(0.01)
                samples = []
                target = CallTarget(link=link, timeout_s=10, request_id="bench")
                for _ in range(calls):
                    started = time.perf_counter_ns()
                    await target.execute("get", "tasks", data={"id": task["row"]["id"]})
                    samples.append(time.perf_counter_ns() - started)
        await databases.drop(database_url)
        return samples
    finally:
        await asyncio.to_thread(server.stop)


async def idle_devices(count: int, workdir: Path) -> tuple[int, float, float]:
    """Connect `count` idle, greeted devices to a server process; its RSS before and after."""
    process = ServerProcess(
        data_dir=workdir / "var",
        env={
            "WS_MAX_CONNECTIONS_PER_USER": str(count),
            "WS_PING_INTERVAL_S": "1",
            "LOG_LEVEL": "WARNING",
        },
    )
    await asyncio.to_thread(process.start)
    assert process.process is not None
    server = psutil.Process(process.process.pid)
    sockets = []
    try:
        async with httpx.AsyncClient(base_url=process.base_url) as http:
            response = await http.post(
                "/api/v1/auth/register",
                json={"email": "idle@example.com", "password": "a long passphrase"},
            )
            token = response.json()["access_token"]
        await asyncio.sleep(1)
        before = server.memory_info().rss
        url = f"ws://127.0.0.1:{process.port}/api/v1/ws/device?token={token}"

        async def connect(n: int) -> None:
            ws = await ws_connect(url, ping_interval=None)
            await ws.send(json.dumps({"type": "device_hello", "device_id": f"desk-{n}"}))
            sockets.append(ws)

        for start in range(0, count, 100):
            await asyncio.gather(*(connect(n) for n in range(start, min(count, start + 100))))

        async def answer_pings(ws: object) -> None:
            async for message in ws:  # type: ignore[attr-defined]
                if json.loads(message)["type"] == "ping":
                    await ws.send('{"type": "pong"}')  # type: ignore[attr-defined]

        pongs = [asyncio.create_task(answer_pings(ws)) for ws in sockets]
        await asyncio.sleep(5)  # several heartbeat rounds
        after = server.memory_info().rss
        alive = sum(1 for ws in sockets if ws.close_code is None)
        for task in pongs:
            task.cancel()
        return alive, before / 2**20, after / 2**20
    finally:
        for ws in sockets:
            await ws.close()
        await asyncio.to_thread(process.stop)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--devices", type=int, default=2000)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        ours = await tool_round_trips(args.calls, workdir / "roundtrip")
        frame = json.dumps({"type": "tool_call", "id": uuid.uuid4().hex, "action": "get"})
        floor = await echo_round_trips(args.calls, frame)
        (ours_p50, ours_p99), (floor_p50, floor_p99) = percentiles(ours), percentiles(floor)
        print(f"tool round trip over loopback, {args.calls} calls (devclient answers at once)")
        print(f"  CallTarget.execute round trip: p50 {ours_p50:8.1f} us   p99 {ours_p99:8.1f} us")
        print(f"  bare websockets echo (floor) : p50 {floor_p50:8.1f} us   p99 {floor_p99:8.1f} us")
        print(
            f"  server + client overhead     : p50 {ours_p50 - floor_p50:8.1f} us   "
            f"p99 {ours_p99 - floor_p99:8.1f} us   ({ours_p50 / floor_p50:.1f}x the floor at p50)"
        )

        alive, before_mb, after_mb = await idle_devices(args.devices, workdir / "idle")
        per_device_kb = (after_mb - before_mb) * 1024 / max(alive, 1)
        print("idle devices with heartbeats (ping every 1 s), target 2000 at < 100 KB each")
        print(f"  connected and alive after 5 s : {alive} of {args.devices}")
        print(f"  server RSS                    : {before_mb:.1f} MB -> {after_mb:.1f} MB")
        print(f"  server memory per device      : {per_device_kb:.1f} KB")


if __name__ == "__main__":
    asyncio.run(main())
