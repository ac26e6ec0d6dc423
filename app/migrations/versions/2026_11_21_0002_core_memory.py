"""Core memory: encrypted key -> value preferences per user.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-21 09:05:01.768231
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "core_memory",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("key_digest", sa.String(length=64), nullable=False),
        sa.Column("key_encrypted", sa.LargeBinary(), nullable=False),
        sa.Column("value_encrypted", sa.LargeBinary(), nullable=False),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_core_memory_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_core_memory")),
        sa.UniqueConstraint("user_id", "key_digest", name=op.f("uq_core_memory_user_id")),
    )
    op.create_index(op.f("ix_core_memory_user_id"), "core_memory", ["user_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_core_memory_user_id"), table_name="core_memory")
    op.drop_table("core_memory")
