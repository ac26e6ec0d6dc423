"""Billing: seats on accounts, Stripe customers, subscriptions and applied webhook events.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-21 18:40:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _created_at() -> sa.Column[object]:
    return sa.Column(
        "created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
    )


def upgrade() -> None:
    op.add_column("users", sa.Column("seats", sa.Integer(), server_default="1", nullable=False))
    op.create_check_constraint(op.f("ck_users_seats"), "users", "seats >= 1")
    op.create_table(
        "billing_customers",
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("stripe_customer_id", sa.String(length=255), nullable=False),
        _created_at(),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_billing_customers_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("user_id", name=op.f("pk_billing_customers")),
        sa.UniqueConstraint(
            "stripe_customer_id", name=op.f("uq_billing_customers_stripe_customer_id")
        ),
    )
    op.create_table(
        "billing_subscriptions",
        sa.Column("stripe_subscription_id", sa.String(length=255), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("tier", sa.String(length=16), nullable=False),
        sa.Column("seats", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("current_period_end", sa.DateTime(timezone=True), nullable=True),
        sa.Column("cancel_at_period_end", sa.Boolean(), nullable=False),
        sa.Column("payment_failed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("state_at", sa.BigInteger(), nullable=False),
        _created_at(),
        sa.CheckConstraint(
            "tier IN ('free', 'pro', 'power', 'team')", name=op.f("ck_billing_subscriptions_tier")
        ),
        sa.CheckConstraint("seats >= 1", name=op.f("ck_billing_subscriptions_seats")),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_billing_subscriptions_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("stripe_subscription_id", name=op.f("pk_billing_subscriptions")),
    )
    op.create_index(
        op.f("ix_billing_subscriptions_user_id"), "billing_subscriptions", ["user_id"], unique=False
    )
    op.create_table(
        "billing_events",
        sa.Column("id", sa.String(length=255), nullable=False),
        sa.Column("type", sa.String(length=255), nullable=False),
        _created_at(),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_billing_events")),
    )


def downgrade() -> None:
    op.drop_table("billing_events")
    op.drop_index(op.f("ix_billing_subscriptions_user_id"), table_name="billing_subscriptions")
    op.drop_table("billing_subscriptions")
    op.drop_table("billing_customers")
    op.drop_constraint(op.f("ck_users_seats"), "users", type_="check")
    op.drop_column("users", "seats")
