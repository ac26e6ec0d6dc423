"""Core memory: the preferences the user asked to be remembered, one value per key.

Keys are normalised (case and spacing) and looked up by digest, so the same
preference said twice replaces the first.
"""

from __future__ import annotations

import uuid
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import delete, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from app.memory.cipher import UserCipher
from app.memory.models import CoreMemory


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
    """Every preference, decrypted, oldest first."""
    rows = await session.execute(
        select(CoreMemory.key_encrypted, CoreMemory.value_encrypted)
        .where(CoreMemory.user_id == user_id)
        .order_by(CoreMemory.created_at)
    )
    return {cipher.decrypt(key): cipher.decrypt(value) for key, value in rows}


async def get_core(
    *, session: AsyncSession, cipher: UserCipher, user_id: uuid.UUID, key: str
) -> str | None:
    """One preference, decrypted; None when nothing is remembered under `key`."""
    value = await session.scalar(
        select(CoreMemory.value_encrypted).where(
            CoreMemory.user_id == user_id,
            CoreMemory.key_digest == cipher.digest(normalize_key(key)),
        )
    )
    return None if value is None else cipher.decrypt(value)


def usable_timezone(remembered: str | None, default: str) -> str:
    """The remembered time zone if it is a real IANA zone, else `default`."""
    if remembered:
        try:
            ZoneInfo(remembered)
        except (ZoneInfoNotFoundError, ValueError):
            return default
        return remembered
    return default


async def user_timezone(
    *, session: AsyncSession, cipher: UserCipher, user_id: uuid.UUID, default: str
) -> str:
    """The time zone the user asked to be remembered ("timezone"), else `default`."""
    remembered = await get_core(session=session, cipher=cipher, user_id=user_id, key="timezone")
    return usable_timezone(remembered, default)


async def forget_core(
    *, session: AsyncSession, cipher: UserCipher, user_id: uuid.UUID, key: str
) -> bool:
    """Delete one preference; False when nothing was remembered under `key`."""
    result = await session.execute(
        delete(CoreMemory).where(
            CoreMemory.user_id == user_id,
            CoreMemory.key_digest == cipher.digest(normalize_key(key)),
        )
    )
    await session.commit()
    return bool(result.rowcount)  # type: ignore[attr-defined]
