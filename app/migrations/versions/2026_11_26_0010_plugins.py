"""Plugin marketplace: plugins, versions, reviews, installs, ratings, purchases, revenue,
payout accounts; and roles on users (`reviewer`).

Revision ID: 0010
Revises: 0009 (journey sessions)
Create Date: 2026-11-26 10:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_SEARCH = (
    "setweight(to_tsvector('english', name), 'A') || "
    "setweight(to_tsvector('english', description), 'B')"
)


def _created_at() -> sa.Column[object]:
    return sa.Column(
        "created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
    )


def _user_fk(table: str, column: str = "user_id", ondelete: str = "CASCADE") -> sa.Constraint:
    return sa.ForeignKeyConstraint(
        [column], ["users.id"], name=op.f(f"fk_{table}_{column}_users"), ondelete=ondelete
    )


def _plugin_fk(table: str) -> sa.Constraint:
    return sa.ForeignKeyConstraint(
        ["plugin_id"],
        ["plugins.id"],
        name=op.f(f"fk_{table}_plugin_id_plugins"),
        ondelete="CASCADE",
    )


def _version_fk(table: str, column: str) -> sa.Constraint:
    return sa.ForeignKeyConstraint(
        [column],
        ["plugin_versions.id"],
        name=op.f(f"fk_{table}_{column}_plugin_versions"),
        ondelete="CASCADE",
    )


def upgrade() -> None:
    op.add_column(
        "users",
        sa.Column(
            "roles",
            postgresql.ARRAY(sa.String(length=32)),
            server_default="{}",
            nullable=False,
        ),
    )
    op.create_check_constraint(
        op.f("ck_users_roles"), "users", "roles <@ ARRAY['reviewer']::varchar[]"
    )
    op.create_table(
        "plugins",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("author_id", sa.Uuid(), nullable=False),
        sa.Column("name_key", sa.String(length=64), nullable=False),
        sa.Column("current_version_id", sa.Uuid(), nullable=True),
        sa.Column("install_count", sa.Integer(), nullable=False),
        sa.Column("rating_count", sa.Integer(), nullable=False),
        sa.Column("rating_sum", sa.Integer(), nullable=False),
        _created_at(),
        sa.CheckConstraint("install_count >= 0", name=op.f("ck_plugins_install_count")),
        sa.CheckConstraint("rating_count >= 0", name=op.f("ck_plugins_rating_count")),
        _user_fk("plugins", "author_id"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_plugins")),
        sa.UniqueConstraint("name_key", name=op.f("uq_plugins_name_key")),
    )
    op.create_index(op.f("ix_plugins_author_id"), "plugins", ["author_id"], unique=False)
    op.create_table(
        "plugin_versions",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("plugin_id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("version", sa.String(length=64), nullable=False),
        sa.Column("category", sa.String(length=32), nullable=False),
        sa.Column("permissions", postgresql.ARRAY(sa.String(length=64)), nullable=False),
        sa.Column("price_cents", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("blob_key", sa.String(length=100), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("checklist", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column(
            "search", postgresql.TSVECTOR(), sa.Computed(_SEARCH, persisted=True), nullable=True
        ),
        _created_at(),
        sa.CheckConstraint("price_cents >= 0", name=op.f("ck_plugin_versions_price_cents")),
        sa.CheckConstraint(
            "status IN ('pending_review', 'approved', 'rejected')",
            name=op.f("ck_plugin_versions_status"),
        ),
        _plugin_fk("plugin_versions"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_plugin_versions")),
        sa.UniqueConstraint("blob_key", name=op.f("uq_plugin_versions_blob_key")),
        sa.UniqueConstraint("plugin_id", "version", name=op.f("uq_plugin_versions_plugin_id")),
    )
    op.create_index(
        op.f("ix_plugin_versions_category"), "plugin_versions", ["category"], unique=False
    )
    op.create_index(
        "ix_plugin_versions_search", "plugin_versions", ["search"], postgresql_using="gin"
    )
    op.create_index(
        "ix_plugin_versions_status", "plugin_versions", ["status", "created_at"], unique=False
    )
    op.create_foreign_key(
        op.f("fk_plugins_current_version_id_plugin_versions"),
        "plugins",
        "plugin_versions",
        ["current_version_id"],
        ["id"],
        ondelete="SET NULL",
    )
    op.create_table(
        "plugin_reviews",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("version_id", sa.Uuid(), nullable=False),
        sa.Column("reviewer_id", sa.Uuid(), nullable=True),
        sa.Column("decision", sa.String(length=16), nullable=False),
        sa.Column("notes", sa.Text(), nullable=False),
        _created_at(),
        sa.CheckConstraint(
            "decision IN ('approve', 'reject')", name=op.f("ck_plugin_reviews_decision")
        ),
        _user_fk("plugin_reviews", "reviewer_id", ondelete="SET NULL"),
        _version_fk("plugin_reviews", "version_id"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_plugin_reviews")),
    )
    op.create_index(
        op.f("ix_plugin_reviews_version_id"), "plugin_reviews", ["version_id"], unique=False
    )
    for table in ("plugin_installs", "plugin_ratings"):
        extra: list[sa.schema.SchemaItem] = (
            [
                sa.Column("stars", sa.SmallInteger(), nullable=False),
                sa.Column("comment", sa.Text(), nullable=True),
                sa.CheckConstraint("stars BETWEEN 1 AND 5", name=op.f("ck_plugin_ratings_stars")),
            ]
            if table == "plugin_ratings"
            else []
        )
        op.create_table(
            table,
            sa.Column("user_id", sa.Uuid(), nullable=False),
            sa.Column("plugin_id", sa.Uuid(), nullable=False),
            *extra,
            _created_at(),
            _plugin_fk(table),
            _user_fk(table),
            sa.PrimaryKeyConstraint("user_id", "plugin_id", name=op.f(f"pk_{table}")),
        )
        op.create_index(op.f(f"ix_{table}_plugin_id"), table, ["plugin_id"], unique=False)
    op.create_table(
        "plugin_purchases",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("plugin_id", sa.Uuid(), nullable=False),
        sa.Column("version_id", sa.Uuid(), nullable=False),
        sa.Column("amount_cents", sa.Integer(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("payment_intent_id", sa.String(length=255), nullable=True),
        _created_at(),
        sa.CheckConstraint(
            "status IN ('pending', 'succeeded', 'failed')",
            name=op.f("ck_plugin_purchases_status"),
        ),
        _plugin_fk("plugin_purchases"),
        _user_fk("plugin_purchases"),
        _version_fk("plugin_purchases", "version_id"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_plugin_purchases")),
        sa.UniqueConstraint(
            "payment_intent_id", name=op.f("uq_plugin_purchases_payment_intent_id")
        ),
    )
    op.create_index("ix_plugin_purchases_user_plugin", "plugin_purchases", ["user_id", "plugin_id"])
    op.create_table(
        "plugin_revenue_events",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("purchase_id", sa.Uuid(), nullable=False),
        sa.Column("plugin_id", sa.Uuid(), nullable=False),
        sa.Column("author_id", sa.Uuid(), nullable=False),
        sa.Column("amount_cents", sa.Integer(), nullable=False),
        sa.Column("author_cents", sa.Integer(), nullable=False),
        sa.Column("platform_cents", sa.Integer(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("charge_id", sa.String(length=255), nullable=True),
        sa.Column("transfer_id", sa.String(length=255), nullable=True),
        sa.Column("transferred_at", sa.DateTime(timezone=True), nullable=True),
        _created_at(),
        sa.CheckConstraint(
            "author_cents + platform_cents = amount_cents",
            name=op.f("ck_plugin_revenue_events_split"),
        ),
        _user_fk("plugin_revenue_events", "author_id"),
        _plugin_fk("plugin_revenue_events"),
        sa.ForeignKeyConstraint(
            ["purchase_id"],
            ["plugin_purchases.id"],
            name=op.f("fk_plugin_revenue_events_purchase_id_plugin_purchases"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_plugin_revenue_events")),
        sa.UniqueConstraint("purchase_id", name=op.f("uq_plugin_revenue_events_purchase_id")),
    )
    op.create_index(
        "ix_plugin_revenue_events_author_created",
        "plugin_revenue_events",
        ["author_id", "created_at"],
    )
    op.create_table(
        "plugin_payout_accounts",
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("stripe_account_id", sa.String(length=255), nullable=False),
        _created_at(),
        _user_fk("plugin_payout_accounts"),
        sa.PrimaryKeyConstraint("user_id", name=op.f("pk_plugin_payout_accounts")),
        sa.UniqueConstraint(
            "stripe_account_id", name=op.f("uq_plugin_payout_accounts_stripe_account_id")
        ),
    )


def downgrade() -> None:
    op.drop_table("plugin_payout_accounts")
    op.drop_table("plugin_revenue_events")
    op.drop_table("plugin_purchases")
    op.drop_table("plugin_ratings")
    op.drop_table("plugin_installs")
    op.drop_table("plugin_reviews")
    op.drop_constraint(
        op.f("fk_plugins_current_version_id_plugin_versions"), "plugins", type_="foreignkey"
    )
    op.drop_table("plugin_versions")
    op.drop_table("plugins")
    op.drop_constraint(op.f("ck_users_roles"), "users", type_="check")
    op.drop_column("users", "roles")
