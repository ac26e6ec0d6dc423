"""Alembic migrations: a full round trip, and models that match them."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from app.core import migrations
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
