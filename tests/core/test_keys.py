"""Master-key rotation: re-wrapping every data key without losing data."""

from __future__ import annotations

import httpx
import pytest
from cryptography.fernet import Fernet
from fastapi import FastAPI
from sqlalchemy import text

from app.core.keys import KeyUnavailableError, MasterKeyring
from app.core.settings import Settings
from tests.master_key import rotate_master_key


def test_retired_master_key_still_opens_until_rewrapped() -> None:
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    wrapped = MasterKeyring(old).new_wrapped_data_key()
    secret = MasterKeyring(old).data_key(wrapped).encrypt(b"note")

    rotating = MasterKeyring(new, [old])
    rewrapped = rotating.rewrap(wrapped)

    assert rotating.data_key(wrapped).decrypt(secret) == b"note"
    assert MasterKeyring(new).data_key(rewrapped).decrypt(secret) == b"note"
    with pytest.raises(KeyUnavailableError):
        MasterKeyring(new).data_key(wrapped)


async def test_rotate_master_key_command_keeps_user_data_readable(
    client: httpx.AsyncClient, app: FastAPI, settings: Settings
) -> None:
    for email in ("ada@example.com", "grace@example.com"):
        response = await client.post(
            "/api/v1/auth/register", json={"email": email, "password": "long enough pw"}
        )
        assert response.status_code == 201
    async with app.state.engine.connect() as conn:
        before = {
            email: bytes(key)
            for email, key in await conn.execute(text("SELECT email, wrapped_data_key FROM users"))
        }
    old_keyring: MasterKeyring = app.state.keyring
    encrypted = {
        email: old_keyring.data_key(key).encrypt(email.encode()) for email, key in before.items()
    }

    new_key = await rotate_master_key(settings)

    async with app.state.engine.connect() as conn:
        after = {
            email: bytes(key)
            for email, key in await conn.execute(text("SELECT email, wrapped_data_key FROM users"))
        }
    new_only = MasterKeyring(new_key)
    for email, token in encrypted.items():
        assert after[email] != before[email]
        assert new_only.data_key(after[email]).decrypt(token) == email.encode()
