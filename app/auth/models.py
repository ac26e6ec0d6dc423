"""Accounts, login sessions and refresh tokens."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import CheckConstraint, DateTime, ForeignKey, Integer, LargeBinary, String, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from app.core.database import Base, TimestampMixin
from app.tiers.matrix import Tier


class User(TimestampMixin, Base):
    __tablename__ = "users"
    __table_args__ = (
        CheckConstraint(
            "tier IN (" + ", ".join(f"'{tier.value}'" for tier in Tier) + ")", name="tier"
        ),
        CheckConstraint("seats >= 1", name="seats"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    # Stored lower-cased, which makes the unique constraint case-insensitive.
    email: Mapped[str] = mapped_column(String(320), unique=True, nullable=False)
    password_hash: Mapped[str] = mapped_column(String(100), nullable=False)
    # The plan, written only by billing (`set_plan`); nothing a client sends changes it.
    tier: Mapped[str] = mapped_column(
        String(16), nullable=False, default=Tier.FREE.value, server_default=Tier.FREE.value
    )
    # Seats paid for on the team plan (1 on the others).
    seats: Mapped[int] = mapped_column(Integer, nullable=False, default=1, server_default="1")
    # The user's Fernet data key, encrypted with the master key; never stored in the clear.
    wrapped_data_key: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)


class AuthSession(TimestampMixin, Base):
    """One login: every refresh and access token it issues share its fate."""

    __tablename__ = "auth_sessions"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), index=True, nullable=False
    )
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class RefreshToken(TimestampMixin, Base):
    __tablename__ = "refresh_tokens"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    session_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("auth_sessions.id", ondelete="CASCADE"), index=True, nullable=False
    )
    token_hash: Mapped[str] = mapped_column(String(64), unique=True, nullable=False)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    # Set when the token is exchanged; a second exchange means it was stolen.
    used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
