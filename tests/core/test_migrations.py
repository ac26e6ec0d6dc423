"""Alembic migrations: a full round trip, models that match them, and upgrades that take turns."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import psycopg
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from app.core import migrations
from app.core.database_urls import libpq_url
from app.core.models_registry import metadata
from tests.databases import TestDatabases

APP_TABLES = {
    "users",
    "auth_sessions",
    "refresh_tokens",
    "core_memory",
    "associative_memory",
    "episodes",
    "proactive_patterns",
    "billing_customers",
    "billing_subscriptions",
    "billing_events",
    "model_usage",
    "batch_agents",
    "batch_runs",
    "batch_processed_chunks",
    "batch_journey_sessions",
    "batch_queued_suggestions",
    "oauth_states",
    "oauth_connections",
    "storage_accounts",
    "storage_records",
    "storage_vectors",
    "storage_backups",
    "plugins",
    "plugin_versions",
    "plugin_reviews",
    "plugin_installs",
    "plugin_ratings",
    "plugin_purchases",
    "plugin_revenue_events",
    "plugin_payout_accounts",
}


@pytest.fixture
async def empty_database_url(databases: TestDatabases) -> AsyncIterator[str]:
    url = await databases.create(template=None)
    try:
        yield url
    finally:
        await databases.drop(url)


async def tables(url: str) -> set[str]:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            result = await conn.execute(
                text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
            )
            return {row[0] for row in result}
    finally:
        await engine.dispose()


async def test_upgrade_downgrade_upgrade_round_trip(empty_database_url: str) -> None:
    await asyncio.to_thread(migrations.upgrade, empty_database_url)
    assert await tables(empty_database_url) >= APP_TABLES

    await asyncio.to_thread(migrations.downgrade, empty_database_url, "base")
    assert await tables(empty_database_url) == {"alembic_version"}

    await asyncio.to_thread(migrations.upgrade, empty_database_url)
    assert await tables(empty_database_url) >= APP_TABLES


async def revision(url: str) -> str | None:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            return await migrations.database_revision(conn)
    finally:
        await engine.dispose()


async def test_upgrades_started_together_take_turns_and_both_succeed(
    empty_database_url: str,
) -> None:
    # As two replicas starting at once on a fresh database; without the advisory lock
    # they would migrate at the same time and one would fail.
    await asyncio.gather(
        asyncio.to_thread(migrations.upgrade, empty_database_url),
        asyncio.to_thread(migrations.upgrade, empty_database_url),
    )

    assert await tables(empty_database_url) >= APP_TABLES
    assert await revision(empty_database_url) == migrations.head_revision()


async def test_an_upgrade_waits_while_another_holds_the_migration_lock(
    empty_database_url: str,
) -> None:
    holder = await psycopg.AsyncConnection.connect(libpq_url(empty_database_url), autocommit=True)
    try:
        await holder.execute("SELECT pg_advisory_lock(%s)", (migrations.MIGRATION_LOCK_KEY,))
        upgrade = asyncio.create_task(asyncio.to_thread(migrations.upgrade, empty_database_url))
        await asyncio.sleep(1.0)
        assert not upgrade.done()
        assert await tables(empty_database_url) == set()

        await holder.execute("SELECT pg_advisory_unlock(%s)", (migrations.MIGRATION_LOCK_KEY,))
        await asyncio.wait_for(upgrade, timeout=60)
    finally:
        await holder.close()

    assert await revision(empty_database_url) == migrations.head_revision()


async def test_migrating_depends_on_no_working_directory(
    empty_database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)

    await asyncio.to_thread(migrations.upgrade, empty_database_url)

    assert await revision(empty_database_url) == migrations.head_revision()


async def test_models_and_migrations_agree(database_url: str) -> None:
    engine = create_async_engine(database_url)
    try:
        async with engine.connect() as conn:
            diff = await conn.run_sync(
                lambda sync_conn: compare_metadata(MigrationContext.configure(sync_conn), metadata)
            )
    finally:
        await engine.dispose()

    assert diff == []


async def test_the_vector_extension_is_installed(database_url: str) -> None:
    engine = create_async_engine(database_url)
    try:
        async with engine.connect() as conn:
            version = await conn.scalar(
                text("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
            )
    finally:
        await engine.dispose()

    assert version is not None
