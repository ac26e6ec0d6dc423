"""What memory does around one chat turn: recall before, remember after.

`TurnMemory.load` runs before the model is called and yields the block the
supervisor's prompt gets; `remember` runs after the answer has reached the
user. Neither may break a turn: a failing embedding provider only switches
off the associative part, and a failing write is logged.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.core.keys import MasterKeyring
from app.core.settings import Settings
from app.memory import core
from app.memory.cipher import UserCipher
from app.memory.embeddings import embed
from app.memory.exchanges import Exchange, remember_exchange
from app.memory.models import EMBEDDING_COLUMN_DIM
from app.memory.prompt import render_context
from app.memory.recall import recall

logger = logging.getLogger(__name__)


def associative_enabled(settings: Settings) -> bool:
    return bool(settings.embedding_model) and settings.embedding_dim == EMBEDDING_COLUMN_DIM


def log_memory_mode(settings: Settings) -> None:
    """Say once, at start-up, when part of memory is off and why."""
    if not settings.embedding_model:
        logger.warning(
            "embeddings are off (EMBEDDING_MODEL is not set): associative memory and note "
            "indexing are disabled; core, episodic and proactive memory work"
        )
    elif settings.embedding_dim != EMBEDDING_COLUMN_DIM:
        logger.warning(
            "associative memory is off: EMBEDDING_DIM does not match the database column",
            extra={"embedding_dim": settings.embedding_dim, "column_dim": EMBEDDING_COLUMN_DIM},
        )


@dataclass
class TurnMemory:
    user_id: uuid.UUID
    cipher: UserCipher
    timezone: str
    context: str
    vector: list[float] | None

    @classmethod
    async def load(
        cls,
        *,
        sessionmaker: async_sessionmaker[AsyncSession],
        keyring: MasterKeyring,
        settings: Settings,
        user_id: uuid.UUID,
        message: str,
    ) -> TurnMemory:
        vector = await _embedding_or_none(settings, message)
        async with sessionmaker() as session:
            cipher = await UserCipher.for_user(session=session, keyring=keyring, user_id=user_id)
            recalled = await recall(
                session=session,
                cipher=cipher,
                user_id=user_id,
                query_vector=vector,
                top_k=settings.memory_top_k,
                recent_episodes=settings.memory_recent_episodes,
                pattern_threshold=settings.memory_pattern_threshold,
            )
        return cls(
            user_id=user_id,
            cipher=cipher,
            timezone=core.usable_timezone(recalled.core.get("timezone"), settings.default_timezone),
            context=render_context(recalled, budget_chars=settings.memory_budget_chars),
            vector=vector,
        )

    async def set_core(
        self, sessionmaker: async_sessionmaker[AsyncSession], key: str, value: str
    ) -> None:
        async with sessionmaker() as session:
            await core.set_core(
                session=session, cipher=self.cipher, user_id=self.user_id, key=key, value=value
            )

    async def remember(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        *,
        thread: str,
        request: str,
        answer: str,
    ) -> None:
        """Store the finished exchange; failures are logged, never raised."""
        try:
            async with sessionmaker() as session:
                await remember_exchange(
                    session=session,
                    cipher=self.cipher,
                    user_id=self.user_id,
                    exchange=Exchange(
                        thread=thread,
                        request=request,
                        answer=answer,
                        at=datetime.now(ZoneInfo(self.timezone)),
                        vector=self.vector,
                    ),
                )
        except Exception:
            logger.exception("storing the exchange in memory failed")


async def _embedding_or_none(settings: Settings, text: str) -> list[float] | None:
    if not associative_enabled(settings):
        return None
    try:
        return await embed(settings, text)
    except Exception as exc:  # the turn goes on without associative memory
        logger.warning("no embedding for this turn", extra={"error": type(exc).__name__})
        return None
