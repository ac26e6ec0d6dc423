"""The user's control over their memory as a whole: what each tier holds, forgetting all."""

from __future__ import annotations

import uuid

from sqlalchemy import Table, delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.database import Base
from app.memory.models import AssociativeMemory, CoreMemory, Episode, ProactivePattern

_TIERS: dict[str, Table] = {
    name: Base.metadata.tables[model.__tablename__]
    for name, model in (
        ("core", CoreMemory),
        ("associative", AssociativeMemory),
        ("episodic", Episode),
        ("proactive", ProactivePattern),
    )
}


async def counts(*, session: AsyncSession, user_id: uuid.UUID) -> dict[str, int]:
    """How many items each tier holds for the user."""
    return {
        name: int(
            await session.scalar(
                select(func.count()).select_from(table).where(table.c.user_id == user_id)
            )
            or 0
        )
        for name, table in _TIERS.items()
    }


async def forget_everything(*, session: AsyncSession, user_id: uuid.UUID) -> None:
    """Delete every remembered item of the user, in every tier."""
    for table in _TIERS.values():
        await session.execute(delete(table).where(table.c.user_id == user_id))
    await session.commit()
