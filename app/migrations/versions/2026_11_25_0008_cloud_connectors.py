"""Cloud connectors: OAuth states and connections, queued suggestions, waiting items per run.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-25 10:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_PROVIDERS = "provider IN ('gmail', 'outlook', 'teams')"


def _user_id() -> sa.Column[object]:
    return sa.Column("user_id", sa.Uuid(), nullable=False)


def _user_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["user_id"], ["users.id"], name=op.f(f"fk_{table}_user_id_users"), ondelete="CASCADE"
    )


def upgrade() -> None:
    op.add_column(
        "batch_runs",
        sa.Column("items_waiting", sa.Integer(), server_default="0", nullable=False),
    )
    op.create_table(
        "oauth_states",
        sa.Column("state_digest", sa.String(length=64), nullable=False),
        _user_id(),
        sa.Column("provider", sa.String(length=16), nullable=False),
        sa.Column("verifier_encrypted", sa.LargeBinary(), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(_PROVIDERS, name=op.f("ck_oauth_states_provider")),
        _user_fk("oauth_states"),
        sa.PrimaryKeyConstraint("state_digest", name=op.f("pk_oauth_states")),
    )
    op.create_table(
        "oauth_connections",
        sa.Column("id", sa.Uuid(), nullable=False),
        _user_id(),
        sa.Column("provider", sa.String(length=16), nullable=False),
        sa.Column("tokens_encrypted", sa.LargeBinary(), nullable=False),
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
        sa.CheckConstraint(_PROVIDERS, name=op.f("ck_oauth_connections_provider")),
        _user_fk("oauth_connections"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_oauth_connections")),
    )
    op.create_index(
        op.f("ix_oauth_connections_user_id"), "oauth_connections", ["user_id"], unique=False
    )
    op.create_table(
        "batch_queued_suggestions",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        _user_id(),
        sa.Column("run_id", sa.Uuid(), nullable=False),
        sa.Column("item_encrypted", sa.LargeBinary(), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        _user_fk("batch_queued_suggestions"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_batch_queued_suggestions")),
    )
    op.create_index(
        "ix_batch_queued_suggestions_user_id_id",
        "batch_queued_suggestions",
        ["user_id", "id"],
        unique=False,
    )
    op.create_index(
        op.f("ix_batch_queued_suggestions_expires_at"),
        "batch_queued_suggestions",
        ["expires_at"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_table("batch_queued_suggestions")
    op.drop_index(op.f("ix_oauth_connections_user_id"), table_name="oauth_connections")
    op.drop_table("oauth_connections")
    op.drop_table("oauth_states")
    op.drop_column("batch_runs", "items_waiting")
