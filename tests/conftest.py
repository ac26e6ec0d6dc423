"""Shared fixtures: a real PostgreSQL, settings, the app and an HTTP client."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.fernet import Fernet
from fastapi import FastAPI

from app.core.embedded_db import EmbeddedPostgres
from app.core.settings import Settings
from app.main import create_app
from tests.billing.fake_stripe import FakeStripe, fake_stripe
from tests.databases import TestDatabases
from tests.e2e.server_process import free_port

pytest_plugins = ["tests.markers"]


@pytest.fixture(scope="session")
def databases(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestDatabases]:
    external = Settings().database_url if os.environ.get("DATABASE_URL") else None
    server: EmbeddedPostgres | None = None
    if external is None:
        server = EmbeddedPostgres(tmp_path_factory.mktemp("pg"))
        server.start()
        server_url = server.database_url
    else:
        server_url = external
    dbs = TestDatabases(server_url)
    asyncio.run(dbs.prepare_template())
    try:
        yield dbs
    finally:
        if server is not None:
            server.stop()


@pytest.fixture
async def database_url(databases: TestDatabases) -> AsyncIterator[str]:
    url = await databases.create()
    try:
        yield url
    finally:
        await databases.drop(url)


@pytest.fixture
def make_settings(tmp_path: Path) -> Callable[..., Settings]:
    """Settings for a test: dev mode, fixed secrets, cheap bcrypt; override anything.

    The secrets are fixed for the test, so a "restarted" server reads old data.
    """
    encryption_key = Fernet.generate_key().decode()

    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "env": "dev",
            "data_dir": tmp_path / "data",
            "jwt_secret": "test-jwt-secret-that-is-long-enough-0123456789",
            "encryption_key": encryption_key,
            "bcrypt_rounds": 4,
        }
        values.update(overrides)
        return Settings(_env_file=None, **values)

    return make


@pytest.fixture
def settings(make_settings: Callable[..., Settings], database_url: str) -> Settings:
    return make_settings(database_url=database_url)


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[FastAPI]:
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield http


@pytest.fixture
async def app_without_database(make_settings: Callable[..., Settings]) -> AsyncIterator[FastAPI]:
    """The app pointed at a port nobody listens on (an external server that is down)."""
    url = f"postgresql+asyncpg://nobody@127.0.0.1:{free_port()}/none"
    application = create_app(make_settings(database_url=url))
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def client_without_database(
    app_without_database: FastAPI,
) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app_without_database)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield http


@pytest.fixture
async def stripe_fake() -> AsyncIterator[FakeStripe]:
    """The fake Stripe on a loopback port (tests/billing/fake_stripe.py)."""
    async with fake_stripe() as fake:
        yield fake
