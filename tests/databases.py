"""Real PostgreSQL for the tests: one server per session, one database per test.

With `DATABASE_URL` set, its server is used; otherwise an embedded PostgreSQL
(the same code path `make run` uses) starts under a temporary directory. A
template database is migrated once; each test gets its own copy of it, so
tests are isolated even when a real server process and several connections
touch the data.
"""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
from sqlalchemy.engine import make_url

from app.core import migrations
from app.core.database_urls import libpq_url, with_database

TEMPLATE_NAME = "adiuva_test_template"

# The old name, still imported by tests/auth/test_login_flood.py.
libpq_dsn = libpq_url


class TestDatabases:
    """Creates and drops per-test databases on one server."""

    __test__ = False  # not a test class, whatever pytest thinks of the name

    def __init__(self, server_url: str) -> None:
        self.server_url = server_url

    async def _admin(self) -> asyncpg.Connection:
        return await asyncpg.connect(libpq_url(with_database(self.server_url, "postgres")))

    async def create(self, *, template: str | None = TEMPLATE_NAME) -> str:
        """A new database (a copy of the migrated template by default); its URL."""
        name = f"adiuva_test_{uuid.uuid4().hex[:12]}"
        conn = await self._admin()
        try:
            source = f" TEMPLATE {template} STRATEGY FILE_COPY" if template else ""
            await conn.execute(f"CREATE DATABASE {name}{source}")
        finally:
            await conn.close()
        return with_database(self.server_url, name)

    async def drop(self, url: str) -> None:
        name = make_url(url).database
        conn = await self._admin()
        try:
            await conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        finally:
            await conn.close()

    async def prepare_template(self) -> None:
        """(Re)create the template database, with the vector extension, migrated to head."""
        conn = await self._admin()
        try:
            await conn.execute(f"DROP DATABASE IF EXISTS {TEMPLATE_NAME} WITH (FORCE)")
            await conn.execute(f"CREATE DATABASE {TEMPLATE_NAME}")
        finally:
            await conn.close()
        template_url = with_database(self.server_url, TEMPLATE_NAME)
        # Alembic's env.py runs its own event loop, so migrate from a worker thread.
        await asyncio.to_thread(migrations.upgrade, template_url)
