"""Batch agents, their run logs and the chunks each agent has processed.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-23 10:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _created_at() -> sa.Column[datetime]:
    return sa.Column(
        "created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
    )


def upgrade() -> None:
    op.create_table(
        "batch_agents",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("agent_type", sa.String(length=32), nullable=False),
        sa.Column("device_id", sa.String(length=128), nullable=True),
        sa.Column("settings_encrypted", sa.LargeBinary(), nullable=False),
        sa.Column("schedule_cron", sa.String(length=100), nullable=False),
        sa.Column("timezone", sa.String(length=64), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("next_run_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_run_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        _created_at(),
        sa.CheckConstraint(
            "agent_type IN ('local_directory', 'gmail', 'outlook', 'teams')",
            name=op.f("ck_batch_agents_agent_type"),
        ),
        sa.CheckConstraint(
            "(agent_type = 'local_directory') = (device_id IS NOT NULL)",
            name=op.f("ck_batch_agents_device"),
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_batch_agents_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_batch_agents")),
    )
    op.create_index(
        "ix_batch_agents_due",
        "batch_agents",
        ["next_run_at"],
        unique=False,
        postgresql_where=sa.text("enabled"),
    )
    op.create_index(
        "ix_batch_agents_user_id_device_id",
        "batch_agents",
        ["user_id", "device_id"],
        unique=False,
    )
    op.create_table(
        "batch_runs",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("agent_id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("trigger", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("items_processed", sa.Integer(), nullable=False),
        sa.Column("items_created", sa.Integer(), nullable=False),
        sa.Column("errors_encrypted", sa.LargeBinary(), nullable=True),
        sa.Column(
            "started_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "touched_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "status IN ('running', 'success', 'partial', 'error')",
            name=op.f("ck_batch_runs_status"),
        ),
        sa.CheckConstraint(
            "trigger IN ('schedule', 'hello', 'manual')",
            name=op.f("ck_batch_runs_trigger"),
        ),
        sa.ForeignKeyConstraint(
            ["agent_id"],
            ["batch_agents.id"],
            name=op.f("fk_batch_runs_agent_id_batch_agents"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_batch_runs_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_batch_runs")),
    )
    op.create_index(
        "uq_batch_runs_running_agent_id",
        "batch_runs",
        ["agent_id"],
        unique=True,
        postgresql_where=sa.text("status = 'running'"),
    )
    op.create_index(
        "ix_batch_runs_running_touched_at",
        "batch_runs",
        ["touched_at"],
        unique=False,
        postgresql_where=sa.text("status = 'running'"),
    )
    op.create_index(
        "ix_batch_runs_user_id_started_at",
        "batch_runs",
        ["user_id", "started_at"],
        unique=False,
    )
    op.create_index(
        "ix_batch_runs_agent_id_started_at",
        "batch_runs",
        ["agent_id", "started_at"],
        unique=False,
    )
    op.create_table(
        "batch_processed_chunks",
        sa.Column("agent_id", sa.Uuid(), nullable=False),
        sa.Column("content_digest", sa.String(length=64), nullable=False),
        _created_at(),
        sa.ForeignKeyConstraint(
            ["agent_id"],
            ["batch_agents.id"],
            name=op.f("fk_batch_processed_chunks_agent_id_batch_agents"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "agent_id", "content_digest", name=op.f("pk_batch_processed_chunks")
        ),
    )


def downgrade() -> None:
    op.drop_table("batch_processed_chunks")
    op.drop_index("ix_batch_runs_agent_id_started_at", table_name="batch_runs")
    op.drop_index("ix_batch_runs_user_id_started_at", table_name="batch_runs")
    op.drop_index("ix_batch_runs_running_touched_at", table_name="batch_runs")
    op.drop_index("uq_batch_runs_running_agent_id", table_name="batch_runs")
    op.drop_table("batch_runs")
    op.drop_index("ix_batch_agents_user_id_device_id", table_name="batch_agents")
    op.drop_index("ix_batch_agents_due", table_name="batch_agents")
    op.drop_table("batch_agents")
