"""A database that cannot be reached is 503 with Retry-After on every route, never 500."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.core import security
from app.core.settings import ResolvedSettings, Settings

UNAVAILABLE = {"detail": "The database is unavailable; try again shortly"}
CREDENTIALS = {"email": "ada@example.com", "password": "a long passphrase"}


def assert_unavailable(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    assert response.json() == UNAVAILABLE
    assert int(response.headers["Retry-After"]) >= 1


async def test_auth_routes_answer_503_with_retry_after_when_the_database_is_down(
    app_without_database: FastAPI, client_without_database: httpx.AsyncClient
) -> None:
    settings: ResolvedSettings = app_without_database.state.settings
    # A well-signed token, so the request gets as far as the database.
    token, _ = security.issue_access_token(
        user_id=uuid.uuid4(),
        session_id=uuid.uuid4(),
        secret=settings.jwt_secret.get_secret_value(),
        ttl_s=60,
    )

    login = await client_without_database.post("/api/v1/auth/login", json=CREDENTIALS)
    register = await client_without_database.post("/api/v1/auth/register", json=CREDENTIALS)
    me = await client_without_database.get(
        "/api/v1/auth/me", headers={"Authorization": f"Bearer {token}"}
    )

    for response in (login, register, me):
        assert_unavailable(response)


async def test_health_says_when_to_look_again_while_degraded(
    client_without_database: httpx.AsyncClient,
) -> None:
    response = await client_without_database.get("/api/v1/health")

    assert response.status_code == 503
    assert response.json()["status"] == "degraded"
    assert int(response.headers["Retry-After"]) >= 1


@pytest.fixture
def settings(make_settings: Callable[..., Settings], database_url: str) -> Settings:
    # One pooled connection and a short wait for it, so a test can hold it.
    return make_settings(
        database_url=database_url, db_pool_size=1, db_max_overflow=0, db_pool_timeout_s=0.5
    )


async def test_a_request_that_cannot_get_a_connection_in_time_answers_503(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    registered = await client.post("/api/v1/auth/register", json=CREDENTIALS)
    assert registered.status_code == 201
    auth = {"Authorization": f"Bearer {registered.json()['access_token']}"}
    engine: AsyncEngine = app.state.engine

    async with engine.connect() as held:  # the pool's only connection, busy elsewhere
        await held.execute(text("SELECT 1"))
        starved = await client.get("/api/v1/auth/me", headers=auth)
        login = await client.post("/api/v1/auth/login", json=CREDENTIALS)

    assert_unavailable(starved)
    assert_unavailable(login)
    assert (await client.get("/api/v1/auth/me", headers=auth)).status_code == 200


async def test_a_database_error_that_is_not_an_outage_stays_a_500(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    @app.get("/bad-sql")
    async def bad_sql() -> None:
        async with app.state.engine.connect() as conn:
            await conn.execute(text("SELEC 1"))

    response = await client.get("/bad-sql")

    assert response.status_code == 500
    assert response.json() == {"detail": "Internal server error"}
    assert "Retry-After" not in response.headers
