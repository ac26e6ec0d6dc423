"""Reading and writing a user's core memory; plaintext exists only in memory."""

from __future__ import annotations

import hashlib
import hmac
import uuid

from cryptography.fernet import Fernet
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.models import User
from app.core.keys import MasterKeyring
from app.memory.models import CoreMemory

MAX_KEY_CHARS = 100
MAX_VALUE_CHARS = 2000


class UserCipher:
    """One user's data key, unwrapped for the length of a request."""

    def __init__(self, data_key: Fernet, raw_key: bytes) -> None:
        self._fernet = data_key
        self._mac_key = raw_key

    @classmethod
    async def for_user(
        cls, *, session: AsyncSession, keyring: MasterKeyring, user_id: uuid.UUID
    ) -> UserCipher:
        wrapped = await session.scalar(select(User.wrapped_data_key).where(User.id == user_id))
        if wrapped is None:
            msg = "no such user"
            raise LookupError(msg)
        fernet = keyring.data_key(wrapped)
        return cls(fernet, keyring.raw_data_key(wrapped))

    def encrypt(self, text: str) -> bytes:
        return self._fernet.encrypt(text.encode())

    def decrypt(self, token: bytes) -> str:
        return self._fernet.decrypt(token).decode()

    def digest(self, text: str) -> str:
        return hmac.new(self._mac_key, text.encode(), hashlib.sha256).hexdigest()


def normalize_key(key: str) -> str:
    return "_".join(key.strip().lower().split())


async def set_core(
    *, session: AsyncSession, cipher: UserCipher, user_id: uuid.UUID, key: str, value: str
) -> None:
    """Insert or replace one preference."""
    key = normalize_key(key)
    statement = insert(CoreMemory).values(
        id=uuid.uuid4(),
        user_id=user_id,
        key_digest=cipher.digest(key),
        key_encrypted=cipher.encrypt(key),
        value_encrypted=cipher.encrypt(value),
    )
    await session.execute(
        statement.on_conflict_do_update(
            index_elements=[CoreMemory.user_id, CoreMemory.key_digest],
            set_={"value_encrypted": statement.excluded.value_encrypted},
        )
    )
    await session.commit()


async def list_core(
    *, session: AsyncSession, cipher: UserCipher, user_id: uuid.UUID
) -> dict[str, str]:
    rows = await session.execute(
        select(CoreMemory.key_encrypted, CoreMemory.value_encrypted)
        .where(CoreMemory.user_id == user_id)
        .order_by(CoreMemory.created_at)
    )
    return {cipher.decrypt(key): cipher.decrypt(value) for key, value in rows}
