"""`is_database_unavailable`: real outages say yes, real mistakes say no.

Every error here is produced by a real PostgreSQL, a real closed port or a
real silent peer; nothing is constructed by hand except the wrapping.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.core.database import create_engine, is_database_unavailable
from app.core.database_urls import libpq_url
from tests.e2e.server_process import free_port

# Connects to closed and silent loopback ports.
pytestmark = pytest.mark.integration


async def raised_by(action: Callable[[], Awaitable[object]]) -> BaseException:
    try:
        await action()
    except Exception as exc:
        return exc
    pytest.fail("expected the action to fail")


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(database_url, pool_size=1, max_overflow=0, pool_timeout_s=0.2)
    try:
        yield engine
    finally:
        await engine.dispose()


async def select_one(engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        await conn.execute(text("SELECT 1"))


async def test_a_refused_connection_is_unavailable() -> None:
    engine = create_engine(f"postgresql+asyncpg://nobody@127.0.0.1:{free_port()}/none")
    try:
        exc = await raised_by(lambda: select_one(engine))
    finally:
        await engine.dispose()

    assert is_database_unavailable(exc)


async def test_a_server_that_never_answers_is_unavailable_after_the_connect_timeout() -> None:
    async def silent(reader: asyncio.StreamReader, _writer: asyncio.StreamWriter) -> None:
        await reader.read()  # accept, then say nothing until the client gives up

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    engine = create_engine(
        f"postgresql+asyncpg://nobody@127.0.0.1:{port}/none", connect_timeout_s=0.3
    )
    try:
        async with asyncio.timeout(20):
            exc = await raised_by(lambda: select_one(engine))
    finally:
        await engine.dispose()
        server.close()

    assert is_database_unavailable(exc)


async def test_no_free_pooled_connection_within_the_timeout_is_unavailable(
    engine: AsyncEngine,
) -> None:
    async with engine.connect() as held:
        await held.execute(text("SELECT 1"))
        exc = await raised_by(lambda: select_one(engine))

    assert is_database_unavailable(exc)
    await select_one(engine)  # and the pool works again once the connection is back


async def test_a_connection_the_server_terminated_is_unavailable(
    engine: AsyncEngine, database_url: str
) -> None:
    admin = create_engine(database_url)
    try:
        async with engine.connect() as conn:
            pid = (await conn.execute(text("SELECT pg_backend_pid()"))).scalar_one()
            async with admin.connect() as other:
                await other.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
            exc = await raised_by(lambda: conn.execute(text("SELECT 1")))
    finally:
        await admin.dispose()

    assert is_database_unavailable(exc)


async def test_the_checkpointer_pool_with_nothing_to_connect_to_is_unavailable() -> None:
    url = libpq_url(f"postgresql+asyncpg://nobody@127.0.0.1:{free_port()}/none")
    pool: AsyncConnectionPool[psycopg.AsyncConnection[object]] = AsyncConnectionPool(
        url, open=False, min_size=1, timeout=0.3
    )
    await pool.open()
    try:

        async def use() -> None:
            async with pool.connection() as conn:
                await conn.execute("SELECT 1")

        exc = await raised_by(use)
    finally:
        await pool.close()

    assert is_database_unavailable(exc)


async def test_a_psycopg_connection_the_server_terminated_is_unavailable(
    engine: AsyncEngine, database_url: str
) -> None:
    conn = await psycopg.AsyncConnection.connect(libpq_url(database_url), autocommit=True)
    try:
        cursor = await conn.execute("SELECT pg_backend_pid()")
        row = await cursor.fetchone()
        assert row is not None
        async with engine.connect() as other:
            await other.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": row[0]})
        exc = await raised_by(lambda: conn.execute("SELECT 1"))
    finally:
        await conn.close()

    assert is_database_unavailable(exc)


async def test_an_outage_wrapped_in_another_error_is_still_an_outage() -> None:
    engine = create_engine(f"postgresql+asyncpg://nobody@127.0.0.1:{free_port()}/none")

    async def wrapped() -> None:
        try:
            await select_one(engine)
        except Exception as exc:
            raise RuntimeError("could not load the user") from exc

    try:
        exc = await raised_by(wrapped)
    finally:
        await engine.dispose()

    assert isinstance(exc, RuntimeError)
    assert is_database_unavailable(exc)
    assert is_database_unavailable(ExceptionGroup("several", [ValueError(), exc]))


async def test_a_constraint_violation_is_not_an_outage(engine: AsyncEngine) -> None:
    async def insert_twice() -> None:
        async with engine.begin() as conn:
            await conn.execute(text("CREATE TEMP TABLE t (id int PRIMARY KEY)"))
            await conn.execute(text("INSERT INTO t VALUES (1), (1)"))

    exc = await raised_by(insert_twice)

    assert "UniqueViolation" in repr(exc) or "unique" in str(exc).lower()
    assert not is_database_unavailable(exc)


async def test_bad_sql_is_not_an_outage(engine: AsyncEngine) -> None:
    async def misspelt() -> None:
        async with engine.connect() as conn:
            await conn.execute(text("SELEC 1"))

    exc = await raised_by(misspelt)

    assert "syntax error" in str(exc)
    assert not is_database_unavailable(exc)


async def test_our_own_os_error_inside_a_transaction_is_not_an_outage(
    engine: AsyncEngine, tmp_path: Path
) -> None:
    async def read_a_missing_file_mid_transaction() -> None:
        async with engine.begin() as conn:
            await conn.execute(text("SELECT 1"))
            (tmp_path / "absent").read_text()

    exc = await raised_by(read_a_missing_file_mid_transaction)

    assert isinstance(exc, FileNotFoundError)
    assert not is_database_unavailable(exc)


def test_an_os_error_outside_the_database_drivers_is_not_an_outage(tmp_path: Path) -> None:
    with pytest.raises(OSError, match="No such file") as missing:
        (tmp_path / "absent").read_text()
    timeout = TimeoutError("the model did not answer")

    assert not is_database_unavailable(missing.value)
    assert not is_database_unavailable(timeout)
    assert not is_database_unavailable(ValueError("nope"))
