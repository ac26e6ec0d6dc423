"""The marketplace's tables: plugins and their versions, reviews, installs, ratings,
purchases, revenue and authors' payout accounts.

A plugin is a name its author owns; each submission is a `PluginVersion` with
its own manifest, package blob and checklist findings. `Plugin.current_version_id`
points at the approved version the catalog shows and installs hand out: a new
version waits for review while the previous one stays installable.
`install_count`, `rating_count` and `rating_sum` are kept on the plugin row and
changed only under its row lock (`SELECT … FOR UPDATE`), so they stay exact
however many installs and ratings arrive at once.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Computed,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
    Uuid,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, TSVECTOR
from sqlalchemy.orm import Mapped, mapped_column

from app.core.database import Base, TimestampMixin
from app.storage.models import BLOB_KEY_LENGTH, SHA256_HEX_LENGTH

# Long enough for "2.10.0-beta.3+build.20261126" and the like.
VERSION_LENGTH = 64
NAME_LENGTH = 64
CATEGORY_LENGTH = 32


class VersionStatus(StrEnum):
    PENDING_REVIEW = "pending_review"
    APPROVED = "approved"
    REJECTED = "rejected"


class Decision(StrEnum):
    APPROVE = "approve"
    REJECT = "reject"


class PurchaseStatus(StrEnum):
    PENDING = "pending"  # the PaymentIntent exists; Stripe has not said it succeeded
    SUCCEEDED = "succeeded"
    FAILED = "failed"  # failed or canceled: a new install starts a new purchase


def _in(column: str, values: type[StrEnum]) -> str:
    return f"{column} IN (" + ", ".join(f"'{value.value}'" for value in values) + ")"


class Plugin(TimestampMixin, Base):
    __tablename__ = "plugins"
    __table_args__ = (
        CheckConstraint("install_count >= 0", name="install_count"),
        CheckConstraint("rating_count >= 0", name="rating_count"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    author_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), index=True, nullable=False
    )
    # Lower-cased: one author owns a name, in any case.
    name_key: Mapped[str] = mapped_column(String(NAME_LENGTH), unique=True, nullable=False)
    # The approved version installs hand out; None until a first approval.
    current_version_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("plugin_versions.id", ondelete="SET NULL", use_alter=True)
    )
    install_count: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    rating_count: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    rating_sum: Mapped[int] = mapped_column(Integer, nullable=False, default=0)


class PluginVersion(TimestampMixin, Base):
    """One submission: the manifest as checked, the package's blob and the checklist."""

    __tablename__ = "plugin_versions"
    __table_args__ = (
        UniqueConstraint("plugin_id", "version"),
        CheckConstraint(_in("status", VersionStatus), name="status"),
        CheckConstraint("price_cents >= 0", name="price_cents"),
        Index("ix_plugin_versions_search", "search", postgresql_using="gin"),
        Index("ix_plugin_versions_status", "status", "created_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    plugin_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("plugins.id", ondelete="CASCADE"), nullable=False
    )
    name: Mapped[str] = mapped_column(String(NAME_LENGTH), nullable=False)
    description: Mapped[str] = mapped_column(Text, nullable=False)
    version: Mapped[str] = mapped_column(String(VERSION_LENGTH), nullable=False)
    category: Mapped[str] = mapped_column(String(CATEGORY_LENGTH), index=True, nullable=False)
    permissions: Mapped[list[str]] = mapped_column(ARRAY(String(64)), nullable=False)
    price_cents: Mapped[int] = mapped_column(Integer, nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False)
    blob_key: Mapped[str] = mapped_column(String(BLOB_KEY_LENGTH), unique=True, nullable=False)
    sha256: Mapped[str] = mapped_column(String(SHA256_HEX_LENGTH), nullable=False)
    size_bytes: Mapped[int] = mapped_column(BigInteger, nullable=False)
    # The automatic checklist's findings: [{check, passed, detail}], all passed.
    checklist: Mapped[list[dict[str, Any]]] = mapped_column(JSONB, nullable=False)
    # Full-text search over name and description (GIN-indexed): the catalog's `q`.
    search: Mapped[str] = mapped_column(
        TSVECTOR,
        Computed(
            "setweight(to_tsvector('english', name), 'A') || "
            "setweight(to_tsvector('english', description), 'B')",
            persisted=True,
        ),
    )


class PluginReview(TimestampMixin, Base):
    """One reviewer's decision on one version; every decision is kept."""

    __tablename__ = "plugin_reviews"
    __table_args__ = (CheckConstraint(_in("decision", Decision), name="decision"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    version_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("plugin_versions.id", ondelete="CASCADE"), index=True, nullable=False
    )
    reviewer_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL")
    )
    decision: Mapped[str] = mapped_column(String(16), nullable=False)
    notes: Mapped[str] = mapped_column(Text, nullable=False)


class PluginInstall(TimestampMixin, Base):
    """A plugin the user has installed (one row per user and plugin)."""

    __tablename__ = "plugin_installs"

    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    plugin_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("plugins.id", ondelete="CASCADE"), primary_key=True, index=True
    )


class PluginRating(TimestampMixin, Base):
    """A user's rating of a plugin; rating again replaces it."""

    __tablename__ = "plugin_ratings"
    __table_args__ = (CheckConstraint("stars BETWEEN 1 AND 5", name="stars"),)

    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    plugin_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("plugins.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    stars: Mapped[int] = mapped_column(SmallInteger, nullable=False)
    comment: Mapped[str | None] = mapped_column(Text)


class PluginPurchase(TimestampMixin, Base):
    """A paid install: a Stripe PaymentIntent the webhook settles."""

    __tablename__ = "plugin_purchases"
    __table_args__ = (
        CheckConstraint(_in("status", PurchaseStatus), name="status"),
        Index("ix_plugin_purchases_user_plugin", "user_id", "plugin_id"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), nullable=False
    )
    plugin_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("plugins.id", ondelete="CASCADE"), nullable=False
    )
    version_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("plugin_versions.id", ondelete="CASCADE"), nullable=False
    )
    amount_cents: Mapped[int] = mapped_column(Integer, nullable=False)
    currency: Mapped[str] = mapped_column(String(3), nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False)
    payment_intent_id: Mapped[str | None] = mapped_column(String(255), unique=True)


class RevenueEvent(TimestampMixin, Base):
    """One paid install's money: `author_cents + platform_cents == amount_cents` always
    (`app.plugins.revenue.split`). `transfer_id` is set once the author's share has been
    transferred to their Stripe Connect account."""

    __tablename__ = "plugin_revenue_events"
    __table_args__ = (
        CheckConstraint("author_cents + platform_cents = amount_cents", name="split"),
        Index("ix_plugin_revenue_events_author_created", "author_id", "created_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    purchase_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("plugin_purchases.id", ondelete="CASCADE"), unique=True, nullable=False
    )
    plugin_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("plugins.id", ondelete="CASCADE"), nullable=False
    )
    author_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), nullable=False
    )
    amount_cents: Mapped[int] = mapped_column(Integer, nullable=False)
    author_cents: Mapped[int] = mapped_column(Integer, nullable=False)
    platform_cents: Mapped[int] = mapped_column(Integer, nullable=False)
    currency: Mapped[str] = mapped_column(String(3), nullable=False)
    # The charge the author's transfer is tied to (Stripe's `source_transaction`).
    charge_id: Mapped[str | None] = mapped_column(String(255))
    transfer_id: Mapped[str | None] = mapped_column(String(255))
    transferred_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class PayoutAccount(TimestampMixin, Base):
    """An author's Stripe Connect account, where their share is transferred."""

    __tablename__ = "plugin_payout_accounts"

    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    stripe_account_id: Mapped[str] = mapped_column(String(255), unique=True, nullable=False)
