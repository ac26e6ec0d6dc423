"""What the server knows of each stored blob: its owner, size, checksum and key.

The bytes themselves live in the blob store (`app.storage.blobs`) under
`blob_key`; a row is committed only after its blob is written, so every row
has its blob. Nothing here can be decrypted: the desktop encrypts before it
uploads, and the server never holds a key for these bytes.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, ClassVar

from pgvector.sqlalchemy import Vector
from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    String,
    UniqueConstraint,
    Uuid,
    func,
)
from sqlalchemy.orm import Mapped, mapped_column

from app.core.database import Base, TimestampMixin

SHA256_HEX_LENGTH = 64
# `{user_id}/{kind}/{blob_id}`: two UUIDs and the longest kind.
BLOB_KEY_LENGTH = 100


class _OwnedBlob(TimestampMixin):
    """The columns of every row that stands for a stored blob."""

    # created_at (and updated_at) come back with the INSERT or UPDATE (RETURNING).
    __mapper_args__: ClassVar[dict[str, Any]] = {"eager_defaults": True}

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    # Each table's first index (or unique constraint) starts with the user.
    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), nullable=False
    )
    blob_key: Mapped[str] = mapped_column(String(BLOB_KEY_LENGTH), unique=True, nullable=False)
    checksum: Mapped[str] = mapped_column(String(SHA256_HEX_LENGTH), nullable=False)
    size_bytes: Mapped[int] = mapped_column(BigInteger, nullable=False)


def _updated_at() -> Mapped[datetime]:
    return mapped_column(
        DateTime(timezone=True), server_default=func.now(), onupdate=func.now(), nullable=False
    )


class StorageAccount(Base):
    """One row per user who has stored something: what their writes lock, so a quota
    check and the write it admits happen one user's request at a time."""

    __tablename__ = "storage_accounts"

    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )


class StoredRecord(_OwnedBlob, Base):
    """One encrypted row of a desktop table."""

    __tablename__ = "storage_records"
    __table_args__ = (
        Index("ix_storage_records_user_table", "user_id", "table_name", "created_at"),
    )

    table_name: Mapped[str] = mapped_column(String(64), nullable=False)
    updated_at: Mapped[datetime] = _updated_at()


class VectorItem(_OwnedBlob, Base):
    """An encrypted item with a vector searched by cosine within its owner's items.

    `embedding` is the vector the desktop shared (`derived` false; every such vector
    of a user has one dimension), or one derived from the blob's SHA-256 (`derived`
    true), which matches identical blobs only.
    """

    __tablename__ = "storage_vectors"
    __table_args__ = (UniqueConstraint("user_id", "item_id"),)

    item_id: Mapped[str] = mapped_column(String(128), nullable=False)  # the desktop's id
    # No fixed dimension: each user has their own (checked on upsert).
    embedding: Mapped[list[float]] = mapped_column(Vector(), nullable=False)
    derived: Mapped[bool] = mapped_column(Boolean, nullable=False)
    updated_at: Mapped[datetime] = _updated_at()


class Backup(_OwnedBlob, Base):
    """A whole encrypted snapshot of the desktop's data."""

    __tablename__ = "storage_backups"
    __table_args__ = (Index("ix_storage_backups_user_created", "user_id", "created_at"),)

    version: Mapped[str] = mapped_column(String(64), nullable=False)
    timestamp_ms: Mapped[int] = mapped_column(BigInteger, nullable=False)
