"""Accounts and tokens over HTTP, as the desktop app uses them."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import httpx
import jwt
import pytest
from cryptography.fernet import InvalidToken
from fastapi import FastAPI
from sqlalchemy import text

from app.core import security
from app.core.keys import MasterKeyring
from app.core.settings import ResolvedSettings

PASSWORD = "correct horse battery"


async def register(client: httpx.AsyncClient, email: str = "Ada@Example.com") -> dict[str, str]:
    response = await client.post(
        "/api/v1/auth/register", json={"email": email, "password": PASSWORD}
    )
    assert response.status_code == 201, response.text
    return dict(response.json())


async def login(client: httpx.AsyncClient, email: str = "ada@example.com") -> dict[str, str]:
    response = await client.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
    assert response.status_code == 200, response.text
    return dict(response.json())


async def me(client: httpx.AsyncClient, access_token: str) -> httpx.Response:
    return await client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {access_token}"})


async def refresh(client: httpx.AsyncClient, refresh_token: str) -> httpx.Response:
    return await client.post("/api/v1/auth/refresh", json={"refresh_token": refresh_token})


async def sql(app: FastAPI, statement: str, **params: object) -> list[tuple[object, ...]]:
    async with app.state.engine.begin() as conn:
        result = await conn.execute(text(statement), params)
        return [tuple(row) for row in result] if result.returns_rows else []


async def test_register_returns_tokens_that_open_the_profile(client: httpx.AsyncClient) -> None:
    tokens = await register(client)

    assert set(tokens) >= {"access_token", "refresh_token", "expires_at"}
    assert datetime.fromisoformat(tokens["expires_at"]) > datetime.now(UTC)
    profile = await me(client, tokens["access_token"])
    assert profile.status_code == 200
    body = profile.json()
    assert body["email"] == "ada@example.com"
    assert body["tier"] == "free"
    uuid.UUID(body["id"])


async def test_email_is_unique_whatever_its_case(client: httpx.AsyncClient) -> None:
    await register(client, "ada@example.com")

    response = await client.post(
        "/api/v1/auth/register", json={"email": "ADA@example.COM", "password": PASSWORD}
    )

    assert response.status_code == 409
    assert response.json() == {"detail": "An account with this email already exists"}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"email": "ada@example.com", "password": "short"}, "password"),
        ({"email": "not-an-email", "password": PASSWORD}, "email"),
        ({"password": PASSWORD}, "email"),
        ({"email": "ada@example.com", "password": 12345678}, "password"),
    ],
)
async def test_invalid_registration_lists_the_field(
    client: httpx.AsyncClient, body: dict[str, object], field: str
) -> None:
    response = await client.post("/api/v1/auth/register", json=body)

    assert response.status_code == 422
    detail = response.json()["detail"]
    assert [error["loc"] for error in detail] == [["body", field]]
    assert PASSWORD not in response.text  # rejected input is not echoed back


async def test_malformed_json_is_a_422_not_a_crash(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/api/v1/auth/register",
        content=b'{"email": "ada@example.com", "pass',
        headers={"Content-Type": "application/json"},
    )

    assert response.status_code == 422
    assert response.json()["detail"][0]["type"] == "json_invalid"


async def test_password_is_stored_only_as_a_bcrypt_hash(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    await register(client)

    [(password_hash,)] = await sql(app, "SELECT password_hash FROM users")
    assert isinstance(password_hash, str)
    assert password_hash.startswith("$2b$")
    assert PASSWORD not in password_hash


async def test_each_user_gets_a_data_key_wrapped_by_the_master_key(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    await register(client, "ada@example.com")
    await register(client, "grace@example.com")

    rows = await sql(app, "SELECT wrapped_data_key FROM users")
    wrapped = [bytes(row[0]) for row in rows]  # type: ignore[call-overload]
    keyring: MasterKeyring = app.state.keyring
    ciphers = [keyring.data_key(w) for w in wrapped]
    secret = ciphers[0].encrypt(b"remember this")
    assert ciphers[0].decrypt(secret) == b"remember this"
    assert wrapped[0] != wrapped[1]
    with pytest.raises(InvalidToken):
        ciphers[1].decrypt(secret)  # another user's key cannot read it
    # What is stored is not itself a usable key: it only opens with the master key.
    with pytest.raises(ValueError, match="Fernet key"):
        MasterKeyring(wrapped[0].decode())


async def test_login_accepts_any_case_of_the_email(client: httpx.AsyncClient) -> None:
    await register(client)

    tokens = await login(client, "ADA@EXAMPLE.com")

    assert (await me(client, tokens["access_token"])).status_code == 200


async def test_wrong_email_and_wrong_password_look_the_same(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    await register(client)
    checks: list[str] = []
    real_verify = security.verify_password

    def counting_verify(password: str, password_hash: str) -> bool:
        checks.append(password_hash)
        return real_verify(password, password_hash)

    monkeypatch.setattr(security, "verify_password", counting_verify)

    wrong_password = await client.post(
        "/api/v1/auth/login", json={"email": "ada@example.com", "password": "wrong password"}
    )
    unknown_email = await client.post(
        "/api/v1/auth/login", json={"email": "nobody@example.com", "password": PASSWORD}
    )

    assert wrong_password.status_code == unknown_email.status_code == 401
    assert (
        wrong_password.json() == unknown_email.json() == {"detail": "Incorrect email or password"}
    )
    assert wrong_password.headers["www-authenticate"] == unknown_email.headers["www-authenticate"]
    # Both paths do exactly one bcrypt check, so they take the same time.
    assert len(checks) == 2
    assert all(h.startswith("$2b$") for h in checks)


async def test_refresh_rotates_and_the_old_refresh_token_stops_working(
    client: httpx.AsyncClient,
) -> None:
    first = await register(client)

    rotated = await refresh(client, first["refresh_token"])

    assert rotated.status_code == 200
    second = rotated.json()
    assert second["refresh_token"] != first["refresh_token"]
    assert (await me(client, second["access_token"])).status_code == 200
    assert (await refresh(client, second["refresh_token"])).status_code == 200


async def test_reusing_a_refresh_token_revokes_the_whole_login(
    client: httpx.AsyncClient,
) -> None:
    stolen = await register(client)
    other_device = await login(client)
    legit = (await refresh(client, stolen["refresh_token"])).json()

    replay = await refresh(client, stolen["refresh_token"])

    assert replay.status_code == 401
    assert replay.headers["www-authenticate"].startswith("Bearer")
    # Every token of that login is dead: the rotated refresh token and the access tokens.
    assert (await refresh(client, legit["refresh_token"])).status_code == 401
    assert (await me(client, legit["access_token"])).status_code == 401
    assert (await me(client, stolen["access_token"])).status_code == 401
    # Another login of the same account is untouched.
    assert (await me(client, other_device["access_token"])).status_code == 200
    assert (await refresh(client, other_device["refresh_token"])).status_code == 200


async def test_unknown_and_expired_refresh_tokens_are_refused(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    tokens = await register(client)
    await sql(app, "UPDATE refresh_tokens SET expires_at = now() - interval '1 second'")

    expired = await refresh(client, tokens["refresh_token"])
    unknown = await refresh(client, "made-up-token")

    assert expired.status_code == unknown.status_code == 401
    assert expired.json() == {"detail": "Invalid or expired refresh token"}


async def test_logout_ends_the_login(client: httpx.AsyncClient) -> None:
    tokens = await register(client)

    response = await client.post(
        "/api/v1/auth/logout", json={"refresh_token": tokens["refresh_token"]}
    )

    assert response.status_code == 204
    assert (await me(client, tokens["access_token"])).status_code == 401
    assert (await refresh(client, tokens["refresh_token"])).status_code == 401


async def test_profile_needs_a_token(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/v1/auth/me")

    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.json() == {"detail": "Not authenticated"}


async def test_expired_access_token_is_refused(client: httpx.AsyncClient, app: FastAPI) -> None:
    settings: ResolvedSettings = app.state.settings
    secret = settings.jwt_secret.get_secret_value()
    tokens = await register(client)
    claims = security.decode_access_token(tokens["access_token"], secret=secret)
    expired, _ = security.issue_access_token(
        user_id=claims.user_id, session_id=claims.session_id, secret=secret, ttl_s=-5
    )

    response = await me(client, expired)

    assert response.status_code == 401
    assert response.json() == {"detail": "Access token expired"}
    assert response.headers["www-authenticate"] == 'Bearer error="invalid_token"'


async def test_tampered_and_foreign_tokens_are_refused(client: httpx.AsyncClient) -> None:
    tokens = await register(client)
    header, payload, signature = tokens["access_token"].split(".")
    tampered = f"{header}.{payload}.{signature[:-4]}AAAA"
    claims = jwt.decode(tokens["access_token"], options={"verify_signature": False})
    forged, _ = security.issue_access_token(
        user_id=uuid.UUID(claims["sub"]),
        session_id=uuid.UUID(claims["sid"]),
        secret="another-secret-that-is-long-enough-0123456789",
        ttl_s=600,
    )

    for token in (tampered, forged, "not-a-jwt", tokens["refresh_token"]):
        response = await me(client, token)
        assert response.status_code == 401, token
        assert response.json() == {"detail": "Invalid access token"}


async def test_tier_comes_from_the_database(client: httpx.AsyncClient, app: FastAPI) -> None:
    tokens = await register(client)
    await sql(app, "UPDATE users SET tier = 'pro'")

    assert (await me(client, tokens["access_token"])).json()["tier"] == "pro"


async def test_deleted_account_tokens_stop_working(client: httpx.AsyncClient, app: FastAPI) -> None:
    tokens = await register(client)
    await sql(app, "DELETE FROM users")

    assert (await me(client, tokens["access_token"])).status_code == 401
    assert (await refresh(client, tokens["refresh_token"])).status_code == 401


async def test_access_token_lifetime_follows_the_setting(client: httpx.AsyncClient) -> None:
    tokens = await register(client)

    expires_at = datetime.fromisoformat(tokens["expires_at"])
    assert timedelta(seconds=890) < expires_at - datetime.now(UTC) <= timedelta(seconds=900)
