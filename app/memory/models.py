"""The four memory tiers (SPEC §7), every text field encrypted with the user's data key.

Lookups that need equality on a secret (a core key, a request's intent) use an
HMAC digest under the user's own key, never the text itself.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from pgvector.sqlalchemy import Vector
from sqlalchemy import (
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    SmallInteger,
    String,
    UniqueConstraint,
    Uuid,
    func,
)
from sqlalchemy.orm import Mapped, mapped_column

from app.core.database import Base, TimestampMixin

# The associative tier's vector size is fixed by its migration; EMBEDDING_DIM
# must match it (README: changing it means a new migration).
EMBEDDING_COLUMN_DIM = 1536


def _user_id() -> Mapped[uuid.UUID]:
    return mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True, nullable=False)


class CoreMemory(TimestampMixin, Base):
    __tablename__ = "core_memory"
    __table_args__ = (UniqueConstraint("user_id", "key_digest"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    user_id: Mapped[uuid.UUID] = _user_id()
    key_digest: Mapped[str] = mapped_column(String(64), nullable=False)
    key_encrypted: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
    value_encrypted: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), onupdate=func.now(), nullable=False
    )


class AssociativeMemory(TimestampMixin, Base):
    """A snippet of a past exchange and its embedding, for similarity search."""

    __tablename__ = "associative_memory"
    __table_args__ = (
        Index(
            "ix_associative_memory_embedding",
            "embedding",
            postgresql_using="hnsw",
            postgresql_ops={"embedding": "vector_cosine_ops"},
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    user_id: Mapped[uuid.UUID] = _user_id()
    content_encrypted: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
    embedding: Mapped[list[float]] = mapped_column(Vector(EMBEDDING_COLUMN_DIM), nullable=False)


class Episode(TimestampMixin, Base):
    """A short summary of one finished exchange."""

    __tablename__ = "episodes"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    user_id: Mapped[uuid.UUID] = _user_id()
    thread_digest: Mapped[str] = mapped_column(String(64), nullable=False)
    summary_encrypted: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
    # What was asked, reduced to a digest, and the weekday it was asked on (the
    # user's time zone, 0 = Monday): what the proactive pass counts.
    intent_digest: Mapped[str] = mapped_column(String(64), nullable=False)
    request_encrypted: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
    weekday: Mapped[int] = mapped_column(SmallInteger, nullable=False)


class ProactivePattern(Base):
    """A habit observed across episodes, with how sure we are of it."""

    __tablename__ = "proactive_patterns"
    __table_args__ = (UniqueConstraint("user_id", "pattern_digest"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    user_id: Mapped[uuid.UUID] = _user_id()
    pattern_digest: Mapped[str] = mapped_column(String(64), nullable=False)
    description_encrypted: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
    source_encrypted: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
    confidence: Mapped[float] = mapped_column(Float, nullable=False)
    occurrences: Mapped[int] = mapped_column(Integer, nullable=False)
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), onupdate=func.now(), nullable=False
    )
