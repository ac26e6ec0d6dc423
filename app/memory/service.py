"""The user's memory: written and read here, plaintext only in this process's memory.

Four tiers (SPEC §7): core preferences, associative snippets found by vector
similarity, episodes (one short summary per exchange), and proactive patterns
derived from episodes. `context_for_turn` turns them into a bounded block of
text for the supervisor's prompt; `remember_exchange` stores a finished
exchange. Every query is scoped to one user id.
"""

from __future__ import annotations

import hashlib
import hmac
import uuid
from dataclasses import dataclass
from datetime import datetime

from cryptography.fernet import Fernet
from sqlalchemy import Table, delete, func, select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.models import User
from app.core.database import Base
from app.core.keys import MasterKeyring
from app.memory.models import AssociativeMemory, CoreMemory, Episode, ProactivePattern

SNIPPET_CHARS = 1000
SUMMARY_PART_CHARS = 160
ITEM_CHARS = 400  # no single remembered item may take more of the prompt than this
MIN_CLIPPED_CHARS = 40
EXACT_SEARCH_MAX_ROWS = 2000


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
        return cls(keyring.data_key(wrapped), keyring.raw_data_key(wrapped))

    def encrypt(self, text: str) -> bytes:
        return self._fernet.encrypt(text.encode())

    def decrypt(self, token: bytes) -> str:
        return self._fernet.decrypt(token).decode()

    def digest(self, text: str) -> str:
        return hmac.new(self._mac_key, text.encode(), hashlib.sha256).hexdigest()


def normalize_key(key: str) -> str:
    return "_".join(key.strip().lower().split())


def intent_of(message: str) -> str:
    """What a request asks, loosely: its first words, case and punctuation ignored."""
    words = "".join(c if c.isalnum() else " " for c in message.lower()).split()
    return " ".join(words[:8])


# -- core ------------------------------------------------------------------------


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


async def forget_core(
    *, session: AsyncSession, cipher: UserCipher, user_id: uuid.UUID, key: str
) -> bool:
    result = await session.execute(
        delete(CoreMemory).where(
            CoreMemory.user_id == user_id,
            CoreMemory.key_digest == cipher.digest(normalize_key(key)),
        )
    )
    await session.commit()
    return bool(result.rowcount)  # type: ignore[attr-defined]


# -- exchanges -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Exchange:
    """One finished turn, as memory sees it."""

    thread: str
    request: str
    answer: str
    at: datetime  # in the user's time zone, for the weekday
    vector: list[float] | None  # the request's embedding; None when embeddings are off


def _clip(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def episode_summary(exchange: Exchange) -> str:
    return (
        f"{exchange.at:%Y-%m-%d %a}: the user asked"
        f" “{_clip(exchange.request, SUMMARY_PART_CHARS)}”;"
        f" you answered “{_clip(exchange.answer, SUMMARY_PART_CHARS)}”"
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
            request_encrypted=cipher.encrypt(_clip(exchange.request, SUMMARY_PART_CHARS)),
            weekday=exchange.at.weekday(),
        )
    )
    if exchange.vector is not None:
        snippet = f"User: {exchange.request}\nAssistant: {exchange.answer}"
        session.add(
            AssociativeMemory(
                user_id=user_id,
                content_encrypted=cipher.encrypt(_clip(snippet, SNIPPET_CHARS)),
                embedding=exchange.vector,
            )
        )
    await session.commit()


# -- reading for a turn ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Recall:
    core: dict[str, str]
    patterns: list[str]
    similar: list[str]  # most similar first
    episodes: list[str]  # oldest first


async def recall(
    *,
    session: AsyncSession,
    cipher: UserCipher,
    user_id: uuid.UUID,
    query_vector: list[float] | None,
    top_k: int,
    recent_episodes: int,
    pattern_threshold: float,
    exact_search_max_rows: int = EXACT_SEARCH_MAX_ROWS,
) -> Recall:
    core = await list_core(session=session, cipher=cipher, user_id=user_id)
    patterns = await session.scalars(
        select(ProactivePattern.description_encrypted)
        .where(
            ProactivePattern.user_id == user_id,
            ProactivePattern.confidence >= pattern_threshold,
        )
        .order_by(ProactivePattern.confidence.desc())
    )
    episodes = list(
        await session.scalars(
            select(Episode.summary_encrypted)
            .where(Episode.user_id == user_id)
            .order_by(Episode.created_at.desc())
            .limit(recent_episodes)
        )
    )
    similar: list[bytes] = []
    if query_vector is not None and top_k:
        similar = await _most_similar(
            session=session,
            user_id=user_id,
            query_vector=query_vector,
            top_k=top_k,
            exact_search_max_rows=exact_search_max_rows,
        )
    return Recall(
        core=core,
        patterns=[cipher.decrypt(p) for p in patterns],
        similar=[cipher.decrypt(s) for s in similar],
        episodes=[cipher.decrypt(e) for e in reversed(episodes)],
    )


async def _most_similar(
    *,
    session: AsyncSession,
    user_id: uuid.UUID,
    query_vector: list[float],
    top_k: int,
    exact_search_max_rows: int,
) -> list[bytes]:
    """The user's `top_k` snippets nearest to `query_vector`, nearest first.

    Up to `exact_search_max_rows` snippets an exact scan of the user's rows is
    fast and exact. Past that, the HNSW index must be used: PostgreSQL's cost
    model does not know how dear a 1,536-dimension distance is and would
    still sort every row (40+ ms at 10,000 rows), so sorting is disabled for
    this, the transaction's last statement, and the index scan iterates until
    it has `top_k` rows of this user (pgvector's iterative scan).
    """
    distance = AssociativeMemory.embedding.cosine_distance(query_vector)
    rows = await session.scalar(select(func.count()).where(AssociativeMemory.user_id == user_id))
    if (rows or 0) > exact_search_max_rows:
        await session.execute(text("SET LOCAL hnsw.iterative_scan = relaxed_order"))
        await session.execute(text("SET LOCAL enable_sort = off"))
    found = await session.execute(
        select(AssociativeMemory.content_encrypted, distance.label("distance"))
        .where(AssociativeMemory.user_id == user_id)
        .order_by(distance)
        .limit(top_k)
    )
    # Relaxed order may return near neighbours slightly out of order.
    return [content for content, _ in sorted(found.all(), key=lambda row: row[1])]


def render_context(memory: Recall, *, budget_chars: int) -> str:
    """The memory block for the prompt: sections in order of importance, within budget.

    Core preferences first, then habits, then similar past exchanges, then the
    latest episodes; each item is clipped, and items that no longer fit are left
    out, so the block never exceeds `budget_chars`.
    """
    sections = [
        ("What the user asked you to remember", [f"{k}: {v}" for k, v in memory.core.items()]),
        ("Habits you have noticed", memory.patterns),
        ("Earlier exchanges similar to this message", memory.similar),
        ("Recent exchanges", memory.episodes),
    ]
    lines: list[str] = []
    used = 0
    for title, items in sections:
        if not items:
            continue
        header = f"{title}:"
        if used + len(header) + 1 > budget_chars:
            break
        section = [header]
        size = len(header) + 1
        for item in items:
            room = budget_chars - used - size - 1
            line = "- " + _clip(item, ITEM_CHARS)
            if len(line) > room:
                # Clip the last item into the space left, unless that leaves a stub.
                if room >= MIN_CLIPPED_CHARS:
                    section.append(_clip(line, room))
                    size += room + 1
                break
            section.append(line)
            size += len(line) + 1
        if len(section) > 1:
            lines.extend(section)
            used += size
    return "\n".join(lines)


# -- user control ----------------------------------------------------------------


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
