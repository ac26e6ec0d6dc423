"""Rotating the master key in a test, the way an operator does it."""

from __future__ import annotations

import asyncio

from cryptography.fernet import Fernet
from pydantic import SecretStr

from app import cli
from app.core.secrets import resolve_secrets
from app.core.settings import Settings


async def rotate_master_key(settings: Settings) -> str:
    """Run `python -m app rotate-master-key` against `settings`' database; the new key.

    The operator sets a new ENCRYPTION_KEY, keeps the one in `settings` as
    retired (ENCRYPTION_OLD_KEYS), and runs the command.
    """
    new_key = Fernet.generate_key().decode()
    rotation = settings.model_copy(
        update={
            "encryption_key": SecretStr(new_key),
            "encryption_old_keys": [settings.encryption_key],
        }
    )
    # The command runs its own event loop, as it does from a shell.
    await asyncio.to_thread(cli.rotate_master_key, resolve_secrets(rotation))
    return new_key
