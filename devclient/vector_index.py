"""Local vector index of the reference desktop client.

The desktop app keeps embeddings of the user's items in a local index that the
server reaches through the ``vector_upsert`` and ``vector_search`` tool calls
(SPEC §4). This is the devclient's index: items live in a ``vectors`` table of
the store's SQLite file, so they survive restarts, and a search is a brute-force
cosine-similarity scan in pure Python -- plenty for the few thousand items a
development client holds, and exact, so tests can rely on its ranking.

Every vector in the index has the same dimension, fixed by the vectors already
stored; an empty, non-numeric, zero or wrongly sized vector is refused with a
`VectorIndexError`.
"""

import heapq
import json
import math
import operator
import sqlite3
from collections.abc import Sequence
from typing import TypedDict

_CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS "vectors" (
  "id" TEXT PRIMARY KEY NOT NULL,
  "projectId" TEXT,
  "content" TEXT NOT NULL,
  "dimension" INTEGER NOT NULL,
  "vector" TEXT NOT NULL
)
"""


class VectorIndexError(ValueError):
    """A vector or limit the index cannot use; the message says why."""


class VectorHit(TypedDict):
    """One search result, in the ``vector_search`` tool_result shape."""

    id: str
    content: str
    score: float


class VectorIndex:
    """Cosine-similarity index persisted in the ``vectors`` table of `connection`."""

    def __init__(self, connection: sqlite3.Connection) -> None:
        self._conn = connection
        with connection:
            connection.execute(_CREATE_TABLE)

    def upsert(
        self, *, item_id: str, project_id: str | None, content: str, vector: Sequence[float]
    ) -> None:
        """Store the item under `item_id`, replacing any item already stored there."""
        values = _checked_vector(vector)
        self._check_dimension(len(values), ignoring=item_id)
        with self._conn:
            self._conn.execute(
                'INSERT OR REPLACE INTO "vectors" ("id", "projectId", "content", "dimension",'
                ' "vector") VALUES (?, ?, ?, ?, ?)',
                (item_id, project_id, content, len(values), json.dumps(values)),
            )

    def search(self, *, vector: Sequence[float], limit: int) -> list[VectorHit]:
        """Return the `limit` items most similar to `vector`, best (highest cosine) first."""
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            msg = f"limit must be a positive integer, got {limit!r}"
            raise VectorIndexError(msg)
        query = _checked_vector(vector)
        self._check_dimension(len(query), ignoring=None)
        query_norm = math.hypot(*query)
        rows = self._conn.execute('SELECT "id", "content", "vector" FROM "vectors"')
        hits = (
            VectorHit(
                id=row[0], content=row[1], score=_cosine(query, query_norm, json.loads(row[2]))
            )
            for row in rows
        )
        return heapq.nlargest(limit, hits, key=operator.itemgetter("score"))

    def _check_dimension(self, dimension: int, *, ignoring: str | None) -> None:
        """Refuse `dimension` unless it matches the vectors stored (other than `ignoring`)."""
        stored = self._conn.execute(
            'SELECT "dimension" FROM "vectors" WHERE "id" IS NOT ? LIMIT 1', (ignoring,)
        ).fetchone()
        if stored is not None and stored[0] != dimension:
            msg = f"vector has {dimension} dimensions; the index holds {stored[0]}-dimensional ones"
            raise VectorIndexError(msg)


def _checked_vector(vector: Sequence[float]) -> list[float]:
    """Return `vector` as floats, or raise if cosine similarity is undefined for it."""
    # The vector arrives from a JSON frame, so its declared type is not a guarantee.
    if not isinstance(vector, list | tuple) or not vector:
        msg = "vector must be a non-empty list of numbers"
        raise VectorIndexError(msg)
    if not all(_is_finite_number(value) for value in vector):
        msg = "vector must contain only finite numbers"
        raise VectorIndexError(msg)
    values = [float(value) for value in vector]
    if not any(values):
        msg = "a zero vector has no direction, so its cosine similarity is undefined"
        raise VectorIndexError(msg)
    return values


def _is_finite_number(value: object) -> bool:
    """Tell whether `value` is a real, finite JSON number (booleans are not numbers)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _cosine(query: list[float], query_norm: float, stored: list[float]) -> float:
    """Cosine similarity of `query` (whose norm is given) and a stored, non-zero vector."""
    dot = sum(q * s for q, s in zip(query, stored, strict=True))
    return dot / (query_norm * math.hypot(*stored))
