"""`make run`'s server as a process: embedded database, restart, clean shutdown, probes.

Also the installed `adiuva-server` script, run away from the source tree.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from websockets.sync.client import connect

from app.core.embedded_db import running_postgres_for
from tests.e2e.server_process import PROJECT_ROOT, ServerProcess

CREDENTIALS = {"email": "ada@example.com", "password": "a long passphrase"}


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT])
def test_embedded_server_stops_cleanly_and_keeps_accounts_across_restarts(
    tmp_path: Path, stop_signal: signal.Signals
) -> None:
    data_dir = tmp_path / "var"
    pgdata = data_dir / "postgres"

    first = ServerProcess(data_dir=data_dir)
    first.start()
    assert httpx.get(f"{first.base_url}/api/v1/health/live").json() == {"status": "ok"}
    assert httpx.get(f"{first.base_url}/api/v1/health/ready").status_code == 200
    registered = httpx.post(f"{first.base_url}/api/v1/auth/register", json=CREDENTIALS)
    assert registered.status_code == 201
    assert running_postgres_for(pgdata), "the embedded PostgreSQL should be running"
    token = registered.json()["access_token"]
    with connect(f"ws://127.0.0.1:{first.port}/api/v1/ws/device?token={token}") as ws:
        ws.send('{"type": "ping"}')
        assert '"pong"' in str(ws.recv(timeout=5))

    assert first.stop(stop_signal) == 0, first.log()
    assert running_postgres_for(pgdata) == [], "no orphan postgres may survive the server"
    assert '"WebSocket /api/v1/ws/device?' in first.log()  # the line is there, redacted
    assert token not in first.log()

    second = ServerProcess(data_dir=data_dir)
    second.start()
    try:
        login = httpx.post(f"{second.base_url}/api/v1/auth/login", json=CREDENTIALS)
        assert login.status_code == 200
        # The dev JWT secret was persisted: a token from before the restart still works.
        old_token = registered.json()["access_token"]
        me = httpx.get(
            f"{second.base_url}/api/v1/auth/me", headers={"Authorization": f"Bearer {old_token}"}
        )
        assert me.status_code == 200
        assert me.json()["email"] == CREDENTIALS["email"]
    finally:
        assert second.stop() == 0, second.log()
    assert running_postgres_for(pgdata) == []


def test_prod_without_secrets_refuses_to_start_and_says_why(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in {"JWT_SECRET", "ENCRYPTION_KEY"}}
    env.update(ENV="prod", DATA_DIR=str(tmp_path / "var"))

    result = subprocess.run(
        [sys.executable, "-m", "app", "serve"],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert result.returncode == 2
    assert "ENV=prod requires JWT_SECRET and ENCRYPTION_KEY to be set" in result.stderr
    assert not (tmp_path / "var" / "postgres").exists()


def test_the_installed_script_migrates_from_any_directory(tmp_path: Path) -> None:
    script = Path(sys.executable).with_name("adiuva-server")
    assert script.exists(), "the project is not installed (make install)"
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "ENV"}}
    env.update(DATA_DIR=str(tmp_path / "var"), LOG_LEVEL="INFO")

    runs = [
        subprocess.run(  # noqa: S603 - our own console script, fixed arguments
            [script, "migrate"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        for _ in range(2)
    ]

    for run in runs:  # the second finds nothing to do
        assert run.returncode == 0, run.stderr
        assert "database is at the latest migration" in run.stderr
    assert running_postgres_for(tmp_path / "var" / "postgres") == []
