"""The embedded PostgreSQL comes back by itself after it dies, and never outlives its stop.

It is stopped by the last of our processes using it, even when another one
that used it was killed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from app.core.embedded_db import (
    APP_DATABASE,
    Backoff,
    EmbeddedPostgres,
    PostgresSupervisor,
    running_postgres_for,
)

# Starts, kills and stops real PostgreSQL servers.
pytestmark = pytest.mark.integration

RECOVERY_DEADLINE_S = 60.0
PROJECT_ROOT = Path(__file__).resolve().parents[2]

# Another process of ours on the same data directory: starts the server (or
# joins it), says "up", and stops when a line arrives on its stdin.
OTHER_PROCESS = """
import sys
from pathlib import Path
from app.core.embedded_db import EmbeddedPostgres
server = EmbeddedPostgres(Path(sys.argv[1]))
server.start()
print("up", flush=True)
sys.stdin.readline()
server.stop()
"""


def test_backoff_doubles_up_to_its_cap_and_starts_over_on_reset() -> None:
    backoff = Backoff(first_s=0.5, max_s=3.0)

    delays = [backoff.next_delay() for _ in range(5)]
    backoff.reset()

    assert delays == [0.5, 1.0, 2.0, 3.0, 3.0]
    assert backoff.next_delay() == 0.5


@pytest.fixture
def server(tmp_path: Path) -> Iterator[EmbeddedPostgres]:
    server = EmbeddedPostgres(tmp_path / "data")
    server.start()
    try:
        yield server
    finally:
        server.stop()
        assert running_postgres_for(server.pgdata) == [], "no postgres may outlive stop()"


def kill_postmaster(server: EmbeddedPostgres) -> int:
    pid = server.postmaster_pid
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    return pid


def test_a_killed_server_is_restarted_with_its_data(server: EmbeddedPostgres) -> None:
    with psycopg.connect(server.uri(APP_DATABASE)) as conn:
        conn.execute("CREATE TABLE kept (note text)")
        conn.execute("INSERT INTO kept VALUES ('still here')")
    supervisor = PostgresSupervisor(server, check_interval_s=0.1, first_retry_s=0.1)
    supervisor.start()
    try:
        killed = kill_postmaster(server)
        deadline = time.monotonic() + RECOVERY_DEADLINE_S
        while not (server.is_running() and server.postmaster_pid != killed):
            assert time.monotonic() < deadline, "the embedded server did not come back"
            time.sleep(0.1)

        with psycopg.connect(server.uri(APP_DATABASE)) as conn:
            assert conn.execute("SELECT note FROM kept").fetchall() == [("still here",)]
    finally:
        supervisor.stop()


def test_stopping_while_the_server_is_down_leaves_no_postgres_behind(
    server: EmbeddedPostgres,
) -> None:
    supervisor = PostgresSupervisor(server, check_interval_s=0.1, first_retry_s=0.1)
    supervisor.start()
    kill_postmaster(server)
    time.sleep(0.3)  # the supervisor has noticed, and may be restarting it right now

    supervisor.stop()
    server.stop()  # the fixture then checks that nothing is left running

    assert not server.is_running()


@pytest.fixture
def data_dir(tmp_path: Path) -> Iterator[Path]:
    """A data directory whose postgres is shut down after the test, whatever happened."""
    data_dir = tmp_path / "data"
    yield data_dir
    for pid in running_postgres_for(data_dir / "postgres"):
        os.kill(pid, signal.SIGQUIT)


def start_other_process(data_dir: Path) -> subprocess.Popen[str]:
    other = subprocess.Popen(  # noqa: S603 - this interpreter, our script, a temp dir
        [sys.executable, "-c", OTHER_PROCESS, str(data_dir)],
        cwd=PROJECT_ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert other.stdout is not None
    assert other.stdout.readline() == "up\n"
    return other


def test_a_server_left_by_a_killed_process_is_adopted_and_stopped_by_the_next(
    data_dir: Path,
) -> None:
    killed = start_other_process(data_dir)
    killed.kill()
    killed.wait()
    [orphan] = running_postgres_for(data_dir / "postgres")

    server = EmbeddedPostgres(data_dir)
    server.start()
    adopted = server.postmaster_pid
    server.stop()

    assert adopted == orphan
    assert running_postgres_for(data_dir / "postgres") == []


def test_the_server_stays_up_while_another_process_still_uses_it(data_dir: Path) -> None:
    other = start_other_process(data_dir)
    try:
        server = EmbeddedPostgres(data_dir)
        server.start()
        server.stop()

        assert running_postgres_for(data_dir / "postgres"), "stopped under another user"
    finally:
        other.communicate("go\n", timeout=RECOVERY_DEADLINE_S)

    assert other.returncode == 0
    assert running_postgres_for(data_dir / "postgres") == [], "the last user stops it"
