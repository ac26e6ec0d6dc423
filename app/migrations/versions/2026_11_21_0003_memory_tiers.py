"""Associative (pgvector, HNSW cosine), episodic and proactive memory.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-21 09:20:21.517970
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from pgvector.sqlalchemy import VECTOR

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "associative_memory",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("content_encrypted", sa.LargeBinary(), nullable=False),
        sa.Column("embedding", VECTOR(dim=1536), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_associative_memory_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_associative_memory")),
    )
    op.create_index(
        "ix_associative_memory_embedding",
        "associative_memory",
        ["embedding"],
        unique=False,
        postgresql_using="hnsw",
        postgresql_ops={"embedding": "vector_cosine_ops"},
    )
    op.create_index(
        op.f("ix_associative_memory_user_id"), "associative_memory", ["user_id"], unique=False
    )
    op.create_table(
        "episodes",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("thread_digest", sa.String(length=64), nullable=False),
        sa.Column("summary_encrypted", sa.LargeBinary(), nullable=False),
        sa.Column("intent_digest", sa.String(length=64), nullable=False),
        sa.Column("request_encrypted", sa.LargeBinary(), nullable=False),
        sa.Column("weekday", sa.SmallInteger(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_episodes_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_episodes")),
    )
    op.create_index(op.f("ix_episodes_user_id"), "episodes", ["user_id"], unique=False)
    op.create_table(
        "proactive_patterns",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("pattern_digest", sa.String(length=64), nullable=False),
        sa.Column("description_encrypted", sa.LargeBinary(), nullable=False),
        sa.Column("source_encrypted", sa.LargeBinary(), nullable=False),
        sa.Column("confidence", sa.Float(), nullable=False),
        sa.Column("occurrences", sa.Integer(), nullable=False),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_proactive_patterns_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_proactive_patterns")),
        sa.UniqueConstraint(
            "user_id", "pattern_digest", name=op.f("uq_proactive_patterns_user_id")
        ),
    )
    op.create_index(
        op.f("ix_proactive_patterns_user_id"), "proactive_patterns", ["user_id"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_proactive_patterns_user_id"), table_name="proactive_patterns")
    op.drop_table("proactive_patterns")
    op.drop_index(op.f("ix_episodes_user_id"), table_name="episodes")
    op.drop_table("episodes")
    op.drop_index(op.f("ix_associative_memory_user_id"), table_name="associative_memory")
    op.drop_index(
        "ix_associative_memory_embedding",
        table_name="associative_memory",
        postgresql_using="hnsw",
        postgresql_ops={"embedding": "vector_cosine_ops"},
    )
    op.drop_table("associative_memory")
