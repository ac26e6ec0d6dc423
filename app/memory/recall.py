"""Reading memory for a turn: every tier, decrypted, scoped to one user.

The associative tier is searched by vector similarity; how PostgreSQL is told
to search it (exact scan or the HNSW index) is decided here too.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from app.memory.cipher import UserCipher
from app.memory.core import list_core
from app.memory.models import AssociativeMemory, Episode, ProactivePattern

# Up to this many snippets a user's exact scan beats the index; past it, the index.
EXACT_SEARCH_MAX_ROWS = 2000


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
    """Core preferences, habits at least `pattern_threshold` sure, the `top_k` snippets
    nearest `query_vector` (none without one) and the latest `recent_episodes`."""
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
