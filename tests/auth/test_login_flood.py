"""A flood of logins is shed with 503 + Retry-After; it never turns the server into 500s."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import AsyncIterator, Callable

import asyncpg
import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.engine import make_url

from app.auth.service import PasswordChecks
from app.core.database_urls import libpq_url
from app.core.errors import ServiceUnavailableError
from app.core.settings import Settings

CREDENTIALS = {"email": "ada@example.com", "password": "a long passphrase"}
WRONG = {"email": "ada@example.com", "password": "not the passphrase"}
FLOOD = 200
# What the database lets the app's role hold at once: a managed server's
# max_connections in miniature. The pool below stays under it.
ROLE_CONNECTION_LIMIT = 3
POOL_SIZE = 2


@pytest.fixture
async def limited_database_url(database_url: str) -> AsyncIterator[str]:
    """The test database, reached as a role that may open only a few connections."""
    role, password = f"flood_{uuid.uuid4().hex[:10]}", uuid.uuid4().hex
    admin = await asyncpg.connect(libpq_url(database_url))
    try:
        await admin.execute(
            f"CREATE ROLE {role} LOGIN PASSWORD '{password}' "
            f"CONNECTION LIMIT {ROLE_CONNECTION_LIMIT}"
        )
        await admin.execute(f"GRANT USAGE ON SCHEMA public TO {role}")
        await admin.execute(
            f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {role}"
        )
        await admin.execute(f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {role}")
        yield (
            make_url(database_url)
            .set(username=role, password=password)
            .render_as_string(hide_password=False)
        )
    finally:
        await admin.execute(f"DROP OWNED BY {role}")
        await admin.execute(f"DROP ROLE {role}")
        await admin.close()


@pytest.fixture
def settings(make_settings: Callable[..., Settings], limited_database_url: str) -> Settings:
    return make_settings(
        database_url=limited_database_url,
        db_pool_size=POOL_SIZE,
        db_max_overflow=0,
        # Slow enough that logins overlap, as they do at the production work factor.
        bcrypt_rounds=8,
        bcrypt_workers=2,
        bcrypt_max_waiting=16,
        # The flood tests load shedding, not the rate limits (tests/tiers).
        rate_limit_anonymous=1_000_000,
        login_max_failures=1_000_000,
    )


def assert_shed_or_refused(response: httpx.Response) -> None:
    """401 for a wrong password, or load shed with a time to come back."""
    assert response.status_code in {401, 429, 503}, (response.status_code, response.text)
    if response.status_code != 401:
        assert int(response.headers["Retry-After"]) >= 1


async def test_a_flood_of_wrong_passwords_is_refused_or_shed_never_a_500(
    client: httpx.AsyncClient,
) -> None:
    registered = await client.post("/api/v1/auth/register", json=CREDENTIALS)
    assert registered.status_code == 201
    auth = {"Authorization": f"Bearer {registered.json()['access_token']}"}

    async def signed_in_user_meanwhile() -> httpx.Response:
        await asyncio.sleep(0.05)  # once the flood is under way
        return await client.get("/api/v1/auth/me", headers=auth)

    async with asyncio.timeout(120):
        *flood, me = await asyncio.gather(
            *(client.post("/api/v1/auth/login", json=WRONG) for _ in range(FLOOD)),
            signed_in_user_meanwhile(),
        )

    for response in flood:
        assert_shed_or_refused(response)
    assert any(response.status_code == 401 for response in flood), "no password was checked"
    assert me.status_code in {200, 503}, me.text
    if me.status_code == 503:
        assert int(me.headers["Retry-After"]) >= 1
    assert (await client.post("/api/v1/auth/login", json=CREDENTIALS)).status_code == 200


async def test_login_and_registration_say_busy_while_every_password_check_is_taken(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    assert (await client.post("/api/v1/auth/register", json=CREDENTIALS)).status_code == 201
    checks: PasswordChecks = app.state.password_checks
    release = threading.Event()
    # Fill both workers and the whole queue with checks that wait for the test.
    held = [asyncio.create_task(checks.run(release.wait, 30)) for _ in range(2 + 16)]
    await asyncio.sleep(0)
    try:
        login = await client.post("/api/v1/auth/login", json=CREDENTIALS)
        register = await client.post(
            "/api/v1/auth/register", json={"email": "bob@example.com", "password": "passphrase b"}
        )
    finally:
        release.set()
        await asyncio.gather(*held)

    for response in (login, register):
        assert response.status_code == 503
        assert response.json() == {"detail": "The server is busy; try again shortly"}
        assert int(response.headers["Retry-After"]) >= 1
    assert (await client.post("/api/v1/auth/login", json=CREDENTIALS)).status_code == 200


async def test_password_checks_admit_workers_plus_queue_and_refuse_the_rest_at_once() -> None:
    checks = PasswordChecks(workers=1, max_waiting=1)
    release = threading.Event()
    running = asyncio.create_task(checks.run(release.wait, 30))
    queued = asyncio.create_task(checks.run(lambda: "queued"))
    await asyncio.sleep(0)

    with pytest.raises(ServiceUnavailableError) as refused:
        await checks.run(lambda: "refused")
    release.set()

    assert refused.value.headers == {"Retry-After": "2"}
    assert await running is True
    assert await queued == "queued"
    assert await checks.run(lambda: "room again") == "room again"
