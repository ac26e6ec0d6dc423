"""Cloud storage: per-user storage accounts, encrypted records, vector items and backups.

Revision ID: 0007
Revises: 0006 (batch agents)
Create Date: 2026-11-24 10:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from pgvector.sqlalchemy import VECTOR

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _timestamp(name: str) -> sa.Column[object]:
    return sa.Column(
        name, sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
    )


def _owned_blob(table: str) -> list[sa.Column[object] | sa.Constraint]:
    """The columns and constraints every table of stored blobs has."""
    return [
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("blob_key", sa.String(length=100), nullable=False),
        sa.Column("checksum", sa.String(length=64), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        _timestamp("created_at"),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f(f"fk_{table}_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f(f"pk_{table}")),
        sa.UniqueConstraint("blob_key", name=op.f(f"uq_{table}_blob_key")),
    ]


def upgrade() -> None:
    op.create_table(
        "storage_accounts",
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_storage_accounts_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("user_id", name=op.f("pk_storage_accounts")),
    )
    op.create_table(
        "storage_records",
        sa.Column("table_name", sa.String(length=64), nullable=False),
        _timestamp("updated_at"),
        *_owned_blob("storage_records"),
    )
    op.create_index(
        "ix_storage_records_user_table",
        "storage_records",
        ["user_id", "table_name", "created_at"],
        unique=False,
    )
    op.create_table(
        "storage_vectors",
        sa.Column("item_id", sa.String(length=128), nullable=False),
        sa.Column("embedding", VECTOR(), nullable=False),
        sa.Column("derived", sa.Boolean(), nullable=False),
        _timestamp("updated_at"),
        *_owned_blob("storage_vectors"),
        sa.UniqueConstraint("user_id", "item_id", name=op.f("uq_storage_vectors_user_id")),
    )
    op.create_table(
        "storage_backups",
        sa.Column("version", sa.String(length=64), nullable=False),
        sa.Column("timestamp_ms", sa.BigInteger(), nullable=False),
        *_owned_blob("storage_backups"),
    )
    op.create_index(
        "ix_storage_backups_user_created",
        "storage_backups",
        ["user_id", "created_at"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index("ix_storage_backups_user_created", table_name="storage_backups")
    op.drop_table("storage_backups")
    op.drop_table("storage_vectors")
    op.drop_index("ix_storage_records_user_table", table_name="storage_records")
    op.drop_table("storage_records")
    op.drop_table("storage_accounts")
