"""Apply Alembic migrations from code (the launcher, the CLI and the tests).

The scripts ship inside the package (`app/migrations`) and the configuration is
built here, so migrating depends on neither the source tree nor the working
directory. An upgrade holds a PostgreSQL advisory lock, so several servers
starting together on one database migrate one after the other.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path

import psycopg
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.ext.asyncio import AsyncConnection

from app.core.database_urls import libpq_url

SCRIPT_LOCATION = Path(__file__).resolve().parent.parent / "migrations"
# Any fixed 64-bit number, the same for every server sharing a database ("adiuva" in ASCII).
MIGRATION_LOCK_KEY = 0x616469757661


def _config(database_url: str | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(SCRIPT_LOCATION))
    if database_url is not None:
        config.attributes["database_url"] = database_url
    return config


@contextmanager
def _migration_lock(database_url: str) -> Iterator[None]:
    """Hold the migration advisory lock on a connection of its own (blocking).

    The connection stays outside any transaction while it waits and holds.
    Closing it releases the lock, as PostgreSQL does should this process die.
    """
    with psycopg.connect(libpq_url(database_url), autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK_KEY,))
        yield


def upgrade(database_url: str, revision: str = "head") -> None:
    """Bring the database to `revision`. Blocking: call it outside the event loop.

    Concurrent callers on one database wait for each other; the later ones find
    the work done.
    """
    with _migration_lock(database_url):
        command.upgrade(_config(database_url), revision)


def downgrade(database_url: str, revision: str) -> None:
    with _migration_lock(database_url):
        command.downgrade(_config(database_url), revision)


@cache
def head_revision() -> str | None:
    """The newest revision among the shipped scripts."""
    return ScriptDirectory.from_config(_config()).get_current_head()


async def database_revision(conn: AsyncConnection) -> str | None:
    """The revision the database is at (None before the first migration)."""
    return await conn.run_sync(
        lambda sync_conn: MigrationContext.configure(sync_conn).get_current_revision()
    )
