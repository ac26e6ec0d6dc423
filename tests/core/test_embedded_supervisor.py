"""The embedded PostgreSQL comes back by itself after it dies, and never outlives its stop."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.core.embedded_db import (
    APP_DATABASE,
    Backoff,
    EmbeddedPostgres,
    PostgresSupervisor,
    running_postgres_for,
)

RECOVERY_DEADLINE_S = 60.0


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
    server.psql(
        "CREATE TABLE kept (note text); INSERT INTO kept VALUES ('still here');",
        database=APP_DATABASE,
    )
    supervisor = PostgresSupervisor(server, check_interval_s=0.1, first_retry_s=0.1)
    supervisor.start()
    try:
        killed = kill_postmaster(server)
        deadline = time.monotonic() + RECOVERY_DEADLINE_S
        while not (server.is_running() and server.postmaster_pid != killed):
            assert time.monotonic() < deadline, "the embedded server did not come back"
            time.sleep(0.1)

        assert "still here" in server.psql("SELECT note FROM kept;", database=APP_DATABASE)
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
