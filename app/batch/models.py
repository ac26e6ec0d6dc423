"""Batch agents, their run logs, and the chunks each agent has already processed.

What the user wrote (name, folders, extensions, prompt template, what to
extract) is one JSON document encrypted with the user's data key; a run's
errors name files, so they are encrypted too. Only what the scheduler needs
is in the clear: the schedule, its time zone, `enabled`, the device and the
timestamps.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Uuid,
    func,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from app.core.database import Base, TimestampMixin


class AgentType(StrEnum):
    LOCAL_DIRECTORY = "local_directory"
    GMAIL = "gmail"
    OUTLOOK = "outlook"
    TEAMS = "teams"


class CloudProvider(StrEnum):
    GMAIL = "gmail"
    OUTLOOK = "outlook"
    TEAMS = "teams"


class RunStatus(StrEnum):
    RUNNING = "running"
    SUCCESS = "success"
    PARTIAL = "partial"
    ERROR = "error"


class RunTrigger(StrEnum):
    SCHEDULE = "schedule"  # the scheduler found the agent due
    HELLO = "hello"  # the agent was overdue when its device connected
    MANUAL = "manual"  # POST /agents/{id}/run


def _one_of(column: str, values: type[StrEnum]) -> str:
    return f"{column} IN (" + ", ".join(f"'{value.value}'" for value in values) + ")"


class BatchAgent(TimestampMixin, Base):
    __tablename__ = "batch_agents"
    __table_args__ = (
        CheckConstraint(_one_of("agent_type", AgentType), name="agent_type"),
        # A local agent belongs to one desktop; cloud agents to none.
        CheckConstraint(
            "(agent_type = 'local_directory') = (device_id IS NOT NULL)", name="device"
        ),
        # What each scheduler pass looks up: enabled agents by due time.
        Index(
            "ix_batch_agents_due",
            "next_run_at",
            postgresql_where=text("enabled"),
        ),
        Index("ix_batch_agents_user_id_device_id", "user_id", "device_id"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), nullable=False
    )
    agent_type: Mapped[str] = mapped_column(String(32), nullable=False)
    device_id: Mapped[str | None] = mapped_column(String(128))
    settings_encrypted: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
    schedule_cron: Mapped[str] = mapped_column(String(100), nullable=False)
    timezone: Mapped[str] = mapped_column(String(64), nullable=False)
    enabled: Mapped[bool] = mapped_column(Boolean, nullable=False)
    next_run_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_run_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), onupdate=func.now(), nullable=False
    )


class BatchRun(Base):
    """One run of an agent: its log row, from `running` to how it ended."""

    __tablename__ = "batch_runs"
    __table_args__ = (
        CheckConstraint(_one_of("status", RunStatus), name="status"),
        CheckConstraint(_one_of("trigger", RunTrigger), name="trigger"),
        # At most one run of an agent at a time, whichever instance or trigger starts it.
        Index(
            "uq_batch_runs_running_agent_id",
            "agent_id",
            unique=True,
            postgresql_where=text("status = 'running'"),
        ),
        # Stale runs (their instance died) are found by their last sign of life.
        Index(
            "ix_batch_runs_running_touched_at",
            "touched_at",
            postgresql_where=text("status = 'running'"),
        ),
        Index("ix_batch_runs_user_id_started_at", "user_id", "started_at"),
        Index("ix_batch_runs_agent_id_started_at", "agent_id", "started_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    agent_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("batch_agents.id", ondelete="CASCADE"), nullable=False
    )
    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), nullable=False
    )
    trigger: Mapped[str] = mapped_column(String(16), nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False)
    items_processed: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    items_created: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    errors_encrypted: Mapped[bytes | None] = mapped_column(LargeBinary)
    # Cloud runs: the user's items still waiting for a desktop when the run ended.
    items_waiting: Mapped[int] = mapped_column(
        Integer, nullable=False, default=0, server_default="0"
    )
    started_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), nullable=False
    )
    completed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Refreshed by the instance running it; a run nobody refreshes was orphaned by a crash.
    touched_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), nullable=False
    )


class ProcessedChunk(Base):
    """Text an agent already extracted from, by its keyed digest (never the text)."""

    __tablename__ = "batch_processed_chunks"

    agent_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("batch_agents.id", ondelete="CASCADE"), primary_key=True
    )
    content_digest: Mapped[str] = mapped_column(String(64), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), nullable=False
    )


class OAuthState(Base):
    """An authorization in progress: single-use, bound to its user, short-lived.

    Only the state's SHA-256 is stored (the state itself travels through the
    browser); the PKCE verifier is encrypted with the user's data key.
    """

    __tablename__ = "oauth_states"
    __table_args__ = (CheckConstraint(_one_of("provider", CloudProvider), name="provider"),)

    state_digest: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), nullable=False
    )
    provider: Mapped[str] = mapped_column(String(16), nullable=False)
    verifier_encrypted: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)


class OAuthConnection(TimestampMixin, Base):
    """A user's tokens for one provider account, encrypted with the user's data key."""

    __tablename__ = "oauth_connections"
    __table_args__ = (CheckConstraint(_one_of("provider", CloudProvider), name="provider"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True
    )
    provider: Mapped[str] = mapped_column(String(16), nullable=False)
    tokens_encrypted: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), onupdate=func.now(), nullable=False
    )


class QueuedSuggestion(Base):
    """An item a cloud run extracted, waiting (encrypted) for one of the user's desktops.

    Delivered in `id` order; removed only once the desktop's `tool_result` succeeded.
    """

    __tablename__ = "batch_queued_suggestions"
    __table_args__ = (Index("ix_batch_queued_suggestions_user_id_id", "user_id", "id"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), nullable=False
    )
    run_id: Mapped[uuid.UUID] = mapped_column(Uuid, nullable=False)
    item_encrypted: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
    expires_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, index=True
    )


class JourneyKind(StrEnum):
    LOCAL = "local"
    CLOUD = "cloud"


class JourneySession(TimestampMixin, Base):
    """A setup journey in progress (or finished): the conversation and its template live in
    `state_encrypted`, encrypted with the user's data key; `answers` counts the user's
    answers so two concurrent answers cannot both be taken."""

    __tablename__ = "batch_journey_sessions"
    __table_args__ = (CheckConstraint(_one_of("kind", JourneyKind), name="kind"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True
    )
    kind: Mapped[str] = mapped_column(String(8), nullable=False)
    answers: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    done: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    state_encrypted: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
