"""Writing a finished exchange to memory: an episode, and with an embedding a snippet.

The episode keeps a short summary plus what the proactive pass counts (the
request's intent as a digest, the weekday); the associative snippet keeps the
exchange itself for similarity search.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from app.memory._text import clip
from app.memory.cipher import UserCipher
from app.memory.models import AssociativeMemory, Episode

SNIPPET_CHARS = 1000
SUMMARY_PART_CHARS = 160


@dataclass(frozen=True, slots=True)
class Exchange:
    """One finished turn, as memory sees it."""

    thread: str
    request: str
    answer: str
    at: datetime  # in the user's time zone, for the weekday
    vector: list[float] | None  # the request's embedding; None when embeddings are off


def intent_of(message: str) -> str:
    """What a request asks, loosely: its first words, case and punctuation ignored."""
    words = "".join(c if c.isalnum() else " " for c in message.lower()).split()
    return " ".join(words[:8])


def episode_summary(exchange: Exchange) -> str:
    return (
        f"{exchange.at:%Y-%m-%d %a}: the user asked"
        f" “{clip(exchange.request, SUMMARY_PART_CHARS)}”;"
        f" you answered “{clip(exchange.answer, SUMMARY_PART_CHARS)}”"
    )


async def remember_exchange(
    *, session: AsyncSession, cipher: UserCipher, user_id: uuid.UUID, exchange: Exchange
) -> None:
    """Store the exchange as an episode and, with an embedding, an associative snippet."""
    session.add(
        Episode(
            user_id=user_id,
            thread_digest=cipher.digest(exchange.thread),
            summary_encrypted=cipher.encrypt(episode_summary(exchange)),
            intent_digest=cipher.digest(intent_of(exchange.request)),
            request_encrypted=cipher.encrypt(clip(exchange.request, SUMMARY_PART_CHARS)),
            weekday=exchange.at.weekday(),
        )
    )
    if exchange.vector is not None:
        snippet = f"User: {exchange.request}\nAssistant: {exchange.answer}"
        session.add(
            AssociativeMemory(
                user_id=user_id,
                content_encrypted=cipher.encrypt(clip(snippet, SNIPPET_CHARS)),
                embedding=exchange.vector,
            )
        )
    await session.commit()
