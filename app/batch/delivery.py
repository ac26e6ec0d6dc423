"""Offline-tolerant delivery: a cloud run's suggestions wait, encrypted, for a desktop.

A cloud run does not need the desktop online. Its items are queued (encrypted
with the user's data key) and handed to one of the user's connected desktops
as `insert` tool calls carrying the run's `run_id`: right after the run, and
whenever a desktop says `device_hello`. Items go in the order they were
queued, each exactly once: a row is deleted only after its `tool_result`
succeeded, and one delivery per user runs at a time across every server
instance (a PostgreSQL advisory lock held for the delivery). A desktop that
drops mid-delivery keeps the rest waiting. Items expire after
`CLOUD_DELIVERY_TTL_S`.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.batch.models import QueuedSuggestion
from app.core.keys import MasterKeyring
from app.device.calls import CallTarget
from app.device.registry import DeviceRegistry
from app.memory.cipher import UserCipher
from protocol.errors import ClientToolError, ToolCallError, ToolCallTooLargeError
from protocol.frames import Table, ToolAction

logger = logging.getLogger(__name__)

_LOCK = text("SELECT pg_try_advisory_xact_lock(hashtextextended(:key, 0))")


def enqueue(
    *,
    session: AsyncSession,
    cipher: UserCipher,
    user_id: uuid.UUID,
    run_id: uuid.UUID,
    items: Sequence[tuple[Table, dict[str, Any]]],
    expires_at: datetime,
) -> None:
    """Add items to the user's queue (committed by the caller, with what they came from)."""
    session.add_all(
        QueuedSuggestion(
            user_id=user_id,
            run_id=run_id,
            item_encrypted=cipher.encrypt(json.dumps({"table": table.value, "data": data})),
            expires_at=expires_at,
        )
        for table, data in items
    )


async def waiting(*, session: AsyncSession, user_id: uuid.UUID, now: datetime) -> int:
    """How many of the user's items wait for a desktop."""
    count = await session.scalar(
        select(func.count())
        .select_from(QueuedSuggestion)
        .where(QueuedSuggestion.user_id == user_id, QueuedSuggestion.expires_at > now)
    )
    return count or 0


async def drop_expired(*, session: AsyncSession, now: datetime) -> int:
    """Delete items nobody collected in time; how many."""
    dropped = (
        await session.scalars(
            delete(QueuedSuggestion)
            .where(QueuedSuggestion.expires_at <= now)
            .returning(QueuedSuggestion.id)
        )
    ).all()
    await session.commit()
    if dropped:
        logger.info("queued suggestions expired", extra={"items": len(dropped)})
    return len(dropped)


class SuggestionDelivery:
    """Hands queued suggestions to the user's connected desktop; one per app."""

    def __init__(
        self,
        *,
        sessionmaker: async_sessionmaker[AsyncSession],
        keyring: MasterKeyring,
        registry: DeviceRegistry,
        tool_call_timeout_s: float,
        ttl: timedelta,
        clock: Callable[[], datetime],
    ) -> None:
        self._sessionmaker = sessionmaker
        self._keyring = keyring
        self._registry = registry
        self._timeout_s = tool_call_timeout_s
        self.ttl = ttl
        self._clock = clock

    async def deliver(self, user_id: uuid.UUID) -> int:
        """Deliver the user's waiting items, oldest first, while a desktop is connected here.

        Returns how many were delivered. Another delivery for the user going
        on (here or on another instance) makes this one return at once: that
        one delivers them.
        """
        if not self._registry.is_online(user_id):
            return 0
        async with self._sessionmaker() as lock_session, lock_session.begin():
            if not await lock_session.scalar(_LOCK, {"key": f"batch-delivery:{user_id}"}):
                return 0
            async with self._sessionmaker() as session:
                cipher = await UserCipher.for_user(
                    session=session, keyring=self._keyring, user_id=user_id
                )
                return await self._deliver_all(session, cipher, user_id)

    async def _deliver_all(
        self, session: AsyncSession, cipher: UserCipher, user_id: uuid.UUID
    ) -> int:
        delivered = 0
        after = 0
        while True:
            link = self._registry.device(user_id)
            if link is None or link.disconnected.is_set():
                return delivered
            item = await session.scalar(
                select(QueuedSuggestion)
                .where(
                    QueuedSuggestion.user_id == user_id,
                    QueuedSuggestion.id > after,
                    QueuedSuggestion.expires_at > self._clock(),
                )
                .order_by(QueuedSuggestion.id)
                .limit(1)
            )
            await session.commit()
            if item is None:
                return delivered
            payload = json.loads(cipher.decrypt(item.item_encrypted))
            target = CallTarget(link=link, timeout_s=self._timeout_s, run_id=str(item.run_id))
            try:
                await target.execute(ToolAction.INSERT, payload["table"], data=payload["data"])
            except (ClientToolError, ToolCallTooLargeError) as exc:
                # The desktop refused this item for good (it would refuse it again): drop it,
                # so one bad item cannot hold back the rest of the queue.
                logger.warning("a queued suggestion was refused", extra={"error": str(exc)[:200]})
            except ToolCallError:
                return delivered  # gone or silent: this item and the rest wait for the next hello
            else:
                delivered += 1
            await session.execute(delete(QueuedSuggestion).where(QueuedSuggestion.id == item.id))
            await session.commit()
            after = item.id
