"""Request rate limits over REST: per user by plan, per address without one, login throttling."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable

import httpx
import pytest
from fastapi import FastAPI
from limits.errors import ConfigurationError
from sqlalchemy import text

from app.core.rate_limit import Quota, RateLimiter, limiter_storage
from app.core.settings import Settings
from app.main import create_app

ME = "/api/v1/auth/me"
LOGIN = "/api/v1/auth/login"
PASSWORD = "a long passphrase"


@pytest.fixture
def settings(make_settings: Callable[..., Settings], database_url: str) -> Settings:
    """The default plan limits; four unauthenticated requests a minute per address."""
    return make_settings(database_url=database_url, rate_limit_anonymous=4)


async def register(client: httpx.AsyncClient, email: str) -> dict[str, str]:
    response = await client.post(
        "/api/v1/auth/register", json={"email": email, "password": PASSWORD}
    )
    assert response.status_code == 201, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


async def set_plan(app: FastAPI, email: str, tier: str, seats: int = 1) -> None:
    async with app.state.engine.begin() as conn:
        await conn.execute(
            text("UPDATE users SET tier = :tier, seats = :seats WHERE email = :email"),
            {"tier": tier, "seats": seats, "email": email},
        )


async def requests_until_refused(
    client: httpx.AsyncClient, headers: dict[str, str], at_most: int
) -> tuple[int, httpx.Response]:
    """GET /auth/me until it is refused; how many were answered, and the refusal."""
    for answered in range(at_most + 1):
        response = await client.get(ME, headers=headers)
        if response.status_code != 200:
            return answered, response
    msg = f"no refusal after {at_most + 1} requests"
    raise AssertionError(msg)


def client_from(app: FastAPI, address: str) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, client=(address, 40000))
    return httpx.AsyncClient(transport=transport, base_url="http://testserver")


async def test_a_free_user_past_20_requests_a_minute_gets_a_clear_429(
    client: httpx.AsyncClient,
) -> None:
    headers = await register(client, "ada@example.com")

    answered, refused = await requests_until_refused(client, headers, 20)

    assert answered == 20
    assert refused.status_code == 429
    assert refused.json() == {
        "detail": "Rate limit exceeded: the free plan allows 20 requests per minute"
    }
    assert 1 <= int(refused.headers["Retry-After"]) <= 60


@pytest.mark.parametrize(
    ("tier", "seats", "limit"),
    [("pro", 1, 60), ("power", 1, 120), ("team", 2, 400)],
)
async def test_each_plan_gets_its_own_limit(
    app: FastAPI, client: httpx.AsyncClient, tier: str, seats: int, limit: int
) -> None:
    headers = await register(client, "ada@example.com")
    await set_plan(app, "ada@example.com", tier, seats)

    answered, refused = await requests_until_refused(client, headers, limit)

    assert answered == limit
    assert refused.status_code == 429
    assert f"the {tier} plan allows {limit} requests per minute" in refused.json()["detail"]


async def test_each_user_has_a_limit_of_their_own(client: httpx.AsyncClient) -> None:
    ada = await register(client, "ada@example.com")
    bob = await register(client, "bob@example.com")
    answered, _ = await requests_until_refused(client, ada, 20)

    assert answered == 20
    assert (await client.get(ME, headers=bob)).status_code == 200


async def test_an_upgrade_applies_to_the_very_next_request(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    headers = await register(client, "ada@example.com")
    await requests_until_refused(client, headers, 20)

    await set_plan(app, "ada@example.com", "pro")

    assert (await client.get(ME, headers=headers)).status_code == 200


async def test_nothing_a_client_sends_sets_the_tier(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    response = await client.post(
        "/api/v1/auth/register",
        json={"email": "ada@example.com", "password": PASSWORD, "tier": "team", "seats": 9},
    )
    headers = {
        "Authorization": f"Bearer {response.json()['access_token']}",
        "X-Tier": "team",
    }

    me = await client.get(ME, headers=headers)
    answered, _ = await requests_until_refused(client, headers, 20)

    assert (me.json()["tier"], answered) == ("free", 19)
    async with app.state.engine.begin() as conn:
        stored = (await conn.execute(text("SELECT tier, seats FROM users"))).one()
    assert tuple(stored) == ("free", 1)


async def test_the_window_moves_and_retry_after_says_when() -> None:
    limiter = RateLimiter(limiter_storage("memory://"))
    quota = Quota(2, window_s=1)

    first = await limiter.hit(quota, scope="test", key="k")
    await asyncio.sleep(0.4)
    second = await limiter.hit(quota, scope="test", key="k")
    refused = await limiter.hit(quota, scope="test", key="k")
    other_key = await limiter.hit(quota, scope="test", key="other")
    assert refused is not None
    await asyncio.sleep(refused + 0.05)  # the first hit has left the window
    again = await limiter.hit(quota, scope="test", key="k")
    refused_again = await limiter.hit(quota, scope="test", key="k")

    assert (first, second, other_key, again) == (None, None, None, None)
    assert 0.4 < refused <= 0.65
    assert refused_again is not None


def test_an_unknown_limiter_storage_stops_the_server_at_start(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings(
        database_url="postgresql://nobody@127.0.0.1:1/none",
        rate_limit_storage_uri="nosuch://localhost",
    )

    with pytest.raises(ConfigurationError):
        create_app(settings)


# -- without a user: per address ---------------------------------------------------------


@pytest.fixture
async def elsewhere(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with client_from(app, "198.51.100.7") as client:
        yield client


async def test_unauthenticated_routes_are_limited_per_client_address(
    client: httpx.AsyncClient, elsewhere: httpx.AsyncClient
) -> None:
    attempts = [
        await client.post("/api/v1/auth/register", json={"email": "x", "password": "y"}),
        await client.post(LOGIN, json={"email": "ada@example.com", "password": "wrong"}),
        await client.post("/api/v1/auth/refresh", json={"refresh_token": "nope"}),
        await client.post("/api/v1/auth/logout", json={"refresh_token": "nope"}),
    ]
    refused = await client.post(LOGIN, json={"email": "ada@example.com", "password": "wrong"})
    other_address = await elsewhere.post(
        LOGIN, json={"email": "bob@example.com", "password": "wrong"}
    )

    assert [a.status_code for a in attempts] == [422, 401, 401, 204]
    assert refused.status_code == 429
    assert refused.json() == {
        "detail": "Rate limit exceeded: 4 requests per minute from one address without signing in"
    }
    assert int(refused.headers["Retry-After"]) >= 1
    assert other_address.status_code == 401


async def test_guessed_tokens_count_against_the_address(client: httpx.AsyncClient) -> None:
    bad = {"Authorization": "Bearer not-a-token"}
    statuses = [(await client.get(ME, headers=bad)).status_code for _ in range(5)]

    assert statuses == [401, 401, 401, 401, 429]


async def test_signed_in_requests_do_not_use_up_the_address(
    client: httpx.AsyncClient, elsewhere: httpx.AsyncClient
) -> None:
    headers = await register(elsewhere, "ada@example.com")  # 1 of the address's 4
    for _ in range(10):
        assert (await elsewhere.get(ME, headers=headers)).status_code == 200

    login = await elsewhere.post(LOGIN, json={"email": "ada@example.com", "password": PASSWORD})

    assert login.status_code == 200


async def test_the_webhook_is_limited_per_address_too(client: httpx.AsyncClient) -> None:
    statuses = [
        (await client.post("/api/v1/billing/webhook", content=b"{}")).status_code for _ in range(5)
    ]

    # 503: billing is off here; the fifth never gets that far.
    assert statuses == [503, 503, 503, 503, 429]


# -- failed logins, per email ----------------------------------------------------------


@pytest.fixture
async def throttled(
    make_settings: Callable[..., Settings], database_url: str
) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(make_settings(database_url=database_url))  # the default 5 per 60 s
    async with app.router.lifespan_context(app), client_from(app, "192.0.2.1") as client:
        yield client


async def test_five_failed_logins_lock_the_email_for_a_minute(
    throttled: httpx.AsyncClient,
) -> None:
    await register(throttled, "ada@example.com")
    wrong = {"email": "ada@example.com", "password": "not it"}
    failures = [(await throttled.post(LOGIN, json=wrong)).status_code for _ in range(5)]

    locked = await throttled.post(LOGIN, json={"email": "ada@example.com", "password": PASSWORD})
    other = await throttled.post(LOGIN, json={"email": "bob@example.com", "password": "x"})

    assert failures == [401] * 5
    assert locked.status_code == 429  # even with the right password
    assert locked.json() == {"detail": "Too many failed logins for this email; try again later"}
    assert 50 <= int(locked.headers["Retry-After"]) <= 60
    assert other.status_code == 401


async def test_the_lock_looks_the_same_whether_or_not_the_email_exists(
    throttled: httpx.AsyncClient,
) -> None:
    await register(throttled, "ada@example.com")

    async def six_wrong(email: str) -> list[tuple[int, str]]:
        answers = [
            await throttled.post(LOGIN, json={"email": email, "password": "not it"})
            for _ in range(6)
        ]
        return [(a.status_code, a.json()["detail"]) for a in answers]

    existing, unknown = await six_wrong("ada@example.com"), await six_wrong("eve@example.com")

    assert existing == unknown
    assert [status for status, _ in existing] == [401] * 5 + [429]


async def test_a_successful_login_forgets_the_failures(throttled: httpx.AsyncClient) -> None:
    await register(throttled, "ada@example.com")
    wrong = {"email": "ada@example.com", "password": "not it"}
    right = {"email": "ada@example.com", "password": PASSWORD}

    first = [(await throttled.post(LOGIN, json=wrong)).status_code for _ in range(4)]
    success = await throttled.post(LOGIN, json=right)
    after = [(await throttled.post(LOGIN, json=wrong)).status_code for _ in range(5)]

    assert first == [401] * 4
    assert success.status_code == 200
    assert after == [401] * 5


async def test_parallel_guesses_cannot_slip_past_the_lock(throttled: httpx.AsyncClient) -> None:
    wrong = {"email": "ada@example.com", "password": "not it"}
    started = time.monotonic()

    answers = await asyncio.gather(*(throttled.post(LOGIN, json=wrong) for _ in range(12)))

    statuses = sorted(a.status_code for a in answers)
    assert statuses == [401] * 5 + [429] * 7
    assert time.monotonic() - started < 30
