"""Batch agents in the database: configurations, run logs, claims, and what was processed.

Every function takes the session and the user (or the run) it works for, so an
agent is only ever found under its owner: another user's id is "not found".
Claims are what make runs exactly-once across server instances: an agent's
slot is taken by one transaction (`FOR UPDATE SKIP LOCKED`, then its
`next_run_at` moves past now), and at most one run per agent can be `running`
(a partial unique index), whoever starts it.

The plan's limit on enabled agents is checked under the user's account lock
(`auth_service.lock_plan`), which billing also holds while it changes the plan:
enabling agents and downgrades take turns per user. Locks are taken in that
order, the account first, then agent rows.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import ValidationError
from sqlalchemy import (
    Uuid,
    and_,
    bindparam,
    delete,
    func,
    literal,
    or_,
    select,
    text,
    tuple_,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY, insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.dml import ReturningInsert
from sqlalchemy.types import String

from app.auth import service as auth_service
from app.batch import oauth
from app.batch.exceptions import (
    AgentNotFoundError,
    EnabledAgentLimitError,
    InvalidFilterError,
    RunAlreadyGoingError,
    UnknownConnectionError,
)
from app.batch.models import (
    AgentType,
    BatchAgent,
    BatchRun,
    CloudProvider,
    ProcessedChunk,
    RunStatus,
    RunTrigger,
)
from app.batch.schedule import next_run_after
from app.batch.schemas import (
    CLOUD_FILTERS,
    AgentSettings,
    CloudAgentRead,
    CloudAgentUpdate,
    GmailAgentCreate,
    LocalAgentCreate,
    LocalAgentRead,
    LocalAgentUpdate,
    OutlookAgentCreate,
    RunPage,
    RunRead,
    TeamsAgentCreate,
)
from app.core.keys import MasterKeyring
from app.core.settings import Settings
from app.memory import core as memory_core
from app.memory.cipher import UserCipher
from app.tiers.matrix import limits_for
from protocol.frames import DataType

logger = logging.getLogger(__name__)

INTERRUPTED = "interrupted: the server running it stopped before it ended"
_LOCAL_TYPES = (AgentType.LOCAL_DIRECTORY.value,)
# Fields of the create model that are the user's words: stored encrypted, as one document.
_PRIVATE_FIELDS = ("name", "directory_paths", "file_extensions", "data_types", "prompt_template")
_RUNNING_ONLY = text("status = 'running'")


@dataclass(frozen=True, slots=True)
class LocalAgentConfig:
    """What a run of a local agent needs, decrypted."""

    id: uuid.UUID
    user_id: uuid.UUID
    device_id: str
    name: str
    directory_paths: list[str]
    file_extensions: list[str]
    data_types: frozenset[DataType]
    prompt_template: str
    timezone: str


@dataclass(frozen=True, slots=True)
class ClaimedRun:
    """A run row in `running`, not yet begun: which agent, on which user's desktop (None: a
    cloud agent, which needs no desktop)."""

    run_id: uuid.UUID
    agent_id: uuid.UUID
    user_id: uuid.UUID
    device_id: str | None
    trigger: RunTrigger
    due_at: datetime | None = None
    """The slot the run was claimed for (its agent's `next_run_at`); None for a manual run."""


# -- configurations ------------------------------------------------------------


def seal(cipher: UserCipher, private: dict[str, Any]) -> bytes:
    """A JSON document of the user's words, encrypted with their data key."""
    return cipher.encrypt(json.dumps(private, ensure_ascii=False, separators=(",", ":")))


def unseal(cipher: UserCipher, sealed: bytes) -> dict[str, Any]:
    """The document `seal` encrypted."""
    private: dict[str, Any] = json.loads(cipher.decrypt(sealed))
    return private


def _unseal(cipher: UserCipher, agent: BatchAgent) -> dict[str, Any]:
    return unseal(cipher, agent.settings_encrypted)


def _row_fields(agent: BatchAgent) -> dict[str, Any]:
    """The fields of `AgentRowRead` that come from the agent's row, not its sealed settings."""
    return {
        "id": agent.id,
        "schedule_cron": agent.schedule_cron,
        "timezone": agent.timezone,
        "enabled": agent.enabled,
        "last_run_at": agent.last_run_at,
        "next_run_at": agent.next_run_at,
        "created_at": agent.created_at,
        "updated_at": agent.updated_at,
    }


def _local_read(agent: BatchAgent, private: dict[str, Any]) -> LocalAgentRead:
    assert agent.device_id is not None  # a local agent always has its device
    return LocalAgentRead(**_row_fields(agent), device_id=agent.device_id, **private)


async def _owned_agent(
    *, session: AsyncSession, user_id: uuid.UUID, agent_id: uuid.UUID, for_update: bool = False
) -> BatchAgent:
    query = select(BatchAgent).where(BatchAgent.id == agent_id, BatchAgent.user_id == user_id)
    if for_update:
        query = query.with_for_update()
    agent = await session.scalar(query)
    if agent is None:
        raise AgentNotFoundError
    return agent


async def _lock_account(*, session: AsyncSession, user_id: uuid.UUID) -> auth_service.Plan:
    """The user's plan as stored now, their account row locked until the transaction ends.

    Concurrent enables of one user's agents, and billing's plan changes, wait here
    for each other, so each counts the enabled agents the one before committed.
    """
    plan = await auth_service.lock_plan(session=session, user_id=user_id)
    if plan is None:  # the account was deleted meanwhile (its agents go with it)
        raise AgentNotFoundError
    return plan


async def count_enabled(*, session: AsyncSession, user_id: uuid.UUID) -> int:
    """The user's enabled agents, local and cloud together (what the plan limits)."""
    enabled = await session.scalar(
        select(func.count())
        .select_from(BatchAgent)
        .where(BatchAgent.user_id == user_id, BatchAgent.enabled)
    )
    return enabled or 0


async def _enable(
    *, session: AsyncSession, settings: Settings, agent: BatchAgent, now: datetime
) -> None:
    """The one place an agent becomes enabled, created so or switched on.

    An agent not enabled yet needs room under the plan's limit on enabled
    agents (`EnabledAgentLimitError`, 403, otherwise); one already enabled (a
    new schedule) keeps its place. The count runs under the account lock, so two
    requests at once cannot both take the last place.
    """
    if not agent.enabled:
        # Nothing flushed first: the agent's other changes are written once, at commit
        # (a second flush would have `updated_at`'s onupdate expire it), and it is not
        # enabled in the table yet, so the count is the same.
        with session.no_autoflush:
            plan = await _lock_account(session=session, user_id=agent.user_id)
            limit = limits_for(plan.tier, settings=settings).batch_agents
            if limit is not None:
                enabled = await count_enabled(session=session, user_id=agent.user_id)
                if enabled >= limit:
                    raise EnabledAgentLimitError(tier=plan.tier, limit=limit)
    agent.enabled = True
    agent.next_run_at = next_run_after(agent.schedule_cron, agent.timezone, now)


def _disable(agent: BatchAgent) -> None:
    agent.enabled = False
    agent.next_run_at = None  # switched on again, it starts from the next slot


async def disable_over_limit(
    *, session: AsyncSession, user_id: uuid.UUID, limit: int, now: datetime
) -> int:
    """Disable the user's newest enabled agents beyond `limit` (deleting none): how many.

    The caller holds the account lock (billing does, while it changes the plan),
    so no agent is enabled meanwhile. Local and cloud agents are counted together.
    """
    # The oldest `limit` stay enabled; the rest are the newest, switched off.
    over = (
        await session.scalars(
            select(BatchAgent.id)
            .where(BatchAgent.user_id == user_id, BatchAgent.enabled)
            .order_by(BatchAgent.created_at, BatchAgent.id)
            .offset(limit)
        )
    ).all()
    if over:
        await session.execute(
            update(BatchAgent)
            .where(BatchAgent.id.in_(over), BatchAgent.enabled)
            .values(enabled=False, next_run_at=None, updated_at=now)
        )
    return len(over)


async def count_agents(*, session: AsyncSession, user_id: uuid.UUID) -> tuple[int, int]:
    """The user's agents of every kind: (all of them, the enabled ones)."""
    row = (
        await session.execute(
            select(func.count(), func.count().filter(BatchAgent.enabled)).where(
                BatchAgent.user_id == user_id
            )
        )
    ).one()
    return row[0], row[1]


async def _add_agent(
    *,
    session: AsyncSession,
    cipher: UserCipher,
    user_id: uuid.UUID,
    agent_type: AgentType,
    device_id: str | None,
    body: AgentSettings,
    private: dict[str, Any],
    settings: Settings,
    now: datetime,
) -> BatchAgent:
    """Store a new agent of any type; without a time zone it takes the user's (else the default)."""
    timezone = body.timezone or await memory_core.user_timezone(
        session=session, cipher=cipher, user_id=user_id, default=settings.default_timezone
    )
    agent = BatchAgent(
        id=uuid.uuid4(),
        user_id=user_id,
        agent_type=agent_type.value,
        device_id=device_id,
        settings_encrypted=seal(cipher, private),
        schedule_cron=body.schedule_cron,
        timezone=timezone,
        enabled=False,
        created_at=now,
        updated_at=now,
    )
    if body.enabled:
        await _enable(session=session, settings=settings, agent=agent, now=now)
    session.add(agent)
    await session.commit()
    return agent


async def create_local_agent(
    *,
    session: AsyncSession,
    cipher: UserCipher,
    user_id: uuid.UUID,
    body: LocalAgentCreate,
    settings: Settings,
    now: datetime,
) -> LocalAgentRead:
    """Store a new local agent."""
    private = body.model_dump(mode="json", include=set(_PRIVATE_FIELDS))
    agent = await _add_agent(
        session=session,
        cipher=cipher,
        user_id=user_id,
        agent_type=AgentType.LOCAL_DIRECTORY,
        device_id=body.device_id,
        body=body,
        private=private,
        settings=settings,
        now=now,
    )
    return _local_read(agent, private)


async def list_local_agents(
    *, session: AsyncSession, cipher: UserCipher, user_id: uuid.UUID
) -> list[LocalAgentRead]:
    """The user's local agents, oldest first."""
    agents = await _agents_of(session=session, user_id=user_id, agent_types=_LOCAL_TYPES)
    return [_local_read(agent, _unseal(cipher, agent)) for agent in agents]


async def _agents_of(
    *, session: AsyncSession, user_id: uuid.UUID, agent_types: Collection[str]
) -> Sequence[BatchAgent]:
    """The user's agents of one of `agent_types`, oldest first (ties by id: a stable order)."""
    agents = await session.scalars(
        select(BatchAgent)
        .where(BatchAgent.user_id == user_id, BatchAgent.agent_type.in_(agent_types))
        .order_by(BatchAgent.created_at, BatchAgent.id)
    )
    return agents.all()


async def _agent_to_change(
    *,
    session: AsyncSession,
    user_id: uuid.UUID,
    agent_id: uuid.UUID,
    agent_types: Collection[str],
    enabling: bool,
) -> BatchAgent:
    """The user's agent of one of `agent_types`, its row locked for a change (404 otherwise).

    Switching on locks the account first, the order billing's downgrade locks them in.
    """
    if enabling:
        await _lock_account(session=session, user_id=user_id)
    agent = await _owned_agent(session=session, user_id=user_id, agent_id=agent_id, for_update=True)
    if agent.agent_type not in agent_types:
        raise AgentNotFoundError
    return agent


async def _change_agent(
    *,
    session: AsyncSession,
    cipher: UserCipher,
    settings: Settings,
    agent: BatchAgent,
    changes: dict[str, Any],
    private_fields: Sequence[str],
    now: datetime,
) -> dict[str, Any]:
    """Apply `changes` to any agent type; the agent's private fields after the change.

    A new schedule (or switching on) starts from the next slot. Switching on needs
    room under the plan's limit (403 otherwise, and nothing changes); switching
    off always works.
    """
    private = _unseal(cipher, agent) | {k: v for k, v in changes.items() if k in private_fields}
    rescheduled = any(
        changes.get(field, getattr(agent, field)) != getattr(agent, field)
        for field in ("schedule_cron", "timezone")
    )
    agent.device_id = changes.get("device_id", agent.device_id)
    agent.schedule_cron = changes.get("schedule_cron", agent.schedule_cron)
    agent.timezone = changes.get("timezone", agent.timezone)
    agent.settings_encrypted = seal(cipher, private)
    agent.updated_at = now
    enabled = changes.get("enabled", agent.enabled)
    if enabled and (rescheduled or not agent.enabled):
        await _enable(session=session, settings=settings, agent=agent, now=now)
    elif not enabled:
        _disable(agent)
    await session.commit()
    return private


async def update_local_agent(
    *,
    session: AsyncSession,
    cipher: UserCipher,
    user_id: uuid.UUID,
    agent_id: uuid.UUID,
    body: LocalAgentUpdate,
    settings: Settings,
    now: datetime,
) -> LocalAgentRead:
    """Change the fields given."""
    agent = await _agent_to_change(
        session=session,
        user_id=user_id,
        agent_id=agent_id,
        agent_types=_LOCAL_TYPES,
        enabling=bool(body.enabled),
    )
    changes = body.model_dump(mode="json", exclude_unset=True, exclude_none=True)
    private = await _change_agent(
        session=session,
        cipher=cipher,
        settings=settings,
        agent=agent,
        changes=changes,
        private_fields=_PRIVATE_FIELDS,
        now=now,
    )
    return _local_read(agent, private)


async def delete_agent(*, session: AsyncSession, user_id: uuid.UUID, agent_id: uuid.UUID) -> None:
    """Delete an agent; its run logs and processed-chunk digests go with it (cascade)."""
    deleted = await session.scalar(
        delete(BatchAgent)
        .where(BatchAgent.id == agent_id, BatchAgent.user_id == user_id)
        .returning(BatchAgent.id)
    )
    if deleted is None:
        raise AgentNotFoundError
    await session.commit()


async def agent_prompt_template(
    *, session: AsyncSession, cipher: UserCipher, user_id: uuid.UUID, agent_id: uuid.UUID
) -> tuple[AgentType, str]:
    """The user's agent's type and prompt template (404 for an agent that is not theirs)."""
    agent = await _owned_agent(session=session, user_id=user_id, agent_id=agent_id)
    template: str = _unseal(cipher, agent)["prompt_template"]
    return AgentType(agent.agent_type), template


async def local_agent_config(
    *, session: AsyncSession, cipher: UserCipher, agent_id: uuid.UUID
) -> LocalAgentConfig | None:
    """What a run of the agent needs; None when the agent is gone (deleted meanwhile)."""
    agent = await session.get(BatchAgent, agent_id)
    if agent is None or agent.device_id is None:
        return None
    private = _unseal(cipher, agent)
    return LocalAgentConfig(
        id=agent.id,
        user_id=agent.user_id,
        device_id=agent.device_id,
        name=private["name"],
        directory_paths=private["directory_paths"],
        file_extensions=private["file_extensions"],
        data_types=frozenset(DataType(kind) for kind in private["data_types"]),
        prompt_template=private["prompt_template"],
        timezone=agent.timezone,
    )


# -- cloud agents ----------------------------------------------------------------

# What the user wrote or chose for a cloud agent, stored encrypted, with the connection it reads.
_CLOUD_PRIVATE_FIELDS = ("name", "data_types", "prompt_template", "filter_config", "connection_id")
_CLOUD_TYPES = tuple(t.value for t in (AgentType.GMAIL, AgentType.OUTLOOK, AgentType.TEAMS))


@dataclass(frozen=True, slots=True)
class CloudAgentConfig:
    """What a run of a cloud agent needs, decrypted."""

    id: uuid.UUID
    user_id: uuid.UUID
    provider: CloudProvider
    connection_id: uuid.UUID
    name: str
    filter_config: dict[str, Any]
    data_types: frozenset[DataType]
    prompt_template: str
    timezone: str
    last_success_at: datetime | None


def _cloud_read(agent: BatchAgent, private: dict[str, Any]) -> CloudAgentRead:
    return CloudAgentRead(
        **_row_fields(agent),
        provider=AgentType(agent.agent_type),
        **{k: v for k, v in private.items() if k != "connection_id"},
    )


async def _connection(
    *, session: AsyncSession, cipher: UserCipher, user_id: uuid.UUID, provider: str, reference: str
) -> str:
    """The id of the user's connection an `encrypted_token` names (`UnknownConnectionError`)."""
    found = oauth.connection_id(cipher, CloudProvider(provider), reference)
    if not await oauth.connection_exists(session=session, user_id=user_id, connection_id=found):
        raise UnknownConnectionError
    return str(found)


async def create_cloud_agent(
    *,
    session: AsyncSession,
    cipher: UserCipher,
    user_id: uuid.UUID,
    body: GmailAgentCreate | OutlookAgentCreate | TeamsAgentCreate,
    settings: Settings,
    now: datetime,
) -> CloudAgentRead:
    """Store a new cloud agent reading the connection `encrypted_token` names.

    Enabled, it takes a place under the plan's limit like a local agent (one count).
    """
    private = body.model_dump(mode="json", include=set(_CLOUD_PRIVATE_FIELDS))
    private["connection_id"] = await _connection(
        session=session,
        cipher=cipher,
        user_id=user_id,
        provider=body.provider.value,
        reference=body.encrypted_token,
    )
    agent = await _add_agent(
        session=session,
        cipher=cipher,
        user_id=user_id,
        agent_type=body.provider,
        device_id=None,
        body=body,
        private=private,
        settings=settings,
        now=now,
    )
    return _cloud_read(agent, private)


async def list_cloud_agents(
    *, session: AsyncSession, cipher: UserCipher, user_id: uuid.UUID
) -> list[CloudAgentRead]:
    """The user's cloud agents, oldest first."""
    agents = await _agents_of(session=session, user_id=user_id, agent_types=_CLOUD_TYPES)
    return [_cloud_read(agent, _unseal(cipher, agent)) for agent in agents]


async def update_cloud_agent(
    *,
    session: AsyncSession,
    cipher: UserCipher,
    user_id: uuid.UUID,
    agent_id: uuid.UUID,
    body: CloudAgentUpdate,
    settings: Settings,
    now: datetime,
) -> CloudAgentRead:
    """Change the fields given; a new filter is checked against the agent's provider (422)."""
    agent = await _agent_to_change(
        session=session,
        user_id=user_id,
        agent_id=agent_id,
        agent_types=_CLOUD_TYPES,
        enabling=bool(body.enabled),
    )
    changes = body.model_dump(mode="json", exclude_unset=True, exclude_none=True)
    if "filter_config" in changes:
        try:
            checked = CLOUD_FILTERS[AgentType(agent.agent_type)].model_validate(
                changes["filter_config"]
            )
        except ValidationError as exc:
            raise InvalidFilterError(exc) from None
        changes["filter_config"] = checked.model_dump(mode="json")
    if "encrypted_token" in changes:
        changes["connection_id"] = await _connection(
            session=session,
            cipher=cipher,
            user_id=user_id,
            provider=agent.agent_type,
            reference=changes.pop("encrypted_token"),
        )
    private = await _change_agent(
        session=session,
        cipher=cipher,
        settings=settings,
        agent=agent,
        changes=changes,
        private_fields=_CLOUD_PRIVATE_FIELDS,
        now=now,
    )
    return _cloud_read(agent, private)


async def cloud_agent_config(
    *, session: AsyncSession, cipher: UserCipher, agent_id: uuid.UUID
) -> CloudAgentConfig | None:
    """What a run of the cloud agent needs; None when the agent is gone."""
    agent = await session.get(BatchAgent, agent_id)
    if agent is None or agent.agent_type not in _CLOUD_TYPES:
        return None
    private = _unseal(cipher, agent)
    last_success = await session.scalar(
        select(func.max(BatchRun.started_at)).where(
            BatchRun.agent_id == agent_id, BatchRun.status == RunStatus.SUCCESS.value
        )
    )
    return CloudAgentConfig(
        id=agent.id,
        user_id=agent.user_id,
        provider=CloudProvider(agent.agent_type),
        connection_id=uuid.UUID(private["connection_id"]),
        name=private["name"],
        filter_config=private["filter_config"],
        data_types=frozenset(DataType(kind) for kind in private["data_types"]),
        prompt_template=private["prompt_template"],
        timezone=agent.timezone,
        last_success_at=last_success,
    )


# -- run logs ----------------------------------------------------------------


def _errors(cipher: UserCipher, run: BatchRun) -> list[str]:
    if run.errors_encrypted is None:
        return []
    errors: list[str] = json.loads(cipher.decrypt(run.errors_encrypted))
    return errors


async def list_runs(
    *,
    session: AsyncSession,
    cipher: UserCipher,
    user_id: uuid.UUID,
    agent_id: uuid.UUID | None,
    page: int,
    limit: int,
) -> RunPage:
    """The user's run logs (of one agent, when given), newest first."""
    where = [BatchRun.user_id == user_id]
    if agent_id is not None:
        await _owned_agent(session=session, user_id=user_id, agent_id=agent_id)
        where.append(BatchRun.agent_id == agent_id)
    total = await session.scalar(select(func.count()).select_from(BatchRun).where(*where))
    runs = await session.scalars(
        select(BatchRun)
        .where(*where)
        .order_by(BatchRun.started_at.desc(), BatchRun.id.desc())
        .offset((page - 1) * limit)
        .limit(limit)
    )
    items = [
        RunRead(
            id=run.id,
            agent_id=run.agent_id,
            trigger=RunTrigger(run.trigger),
            status=RunStatus(run.status),
            items_processed=run.items_processed,
            items_created=run.items_created,
            items_waiting=run.items_waiting,
            errors=_errors(cipher, run),
            started_at=run.started_at,
            completed_at=run.completed_at,
        )
        for run in runs
    ]
    return RunPage(items=items, page=page, limit=limit, total=total or 0)


# -- claims ------------------------------------------------------------------


def _new_runs(
    claims: Iterable[tuple[uuid.UUID, uuid.UUID]], trigger: RunTrigger, now: datetime
) -> ReturningInsert[uuid.UUID, uuid.UUID]:
    """An INSERT of one `running` row per (agent, user); agents with a run going are skipped."""
    rows = [
        {
            "id": uuid.uuid4(),
            "agent_id": agent_id,
            "user_id": user_id,
            "trigger": trigger.value,
            "status": RunStatus.RUNNING.value,
            "items_processed": 0,
            "items_created": 0,
            "started_at": now,
            "touched_at": now,
        }
        for agent_id, user_id in claims
    ]
    return (
        insert(BatchRun)
        .values(rows)
        .on_conflict_do_nothing(index_elements=[BatchRun.agent_id], index_where=_RUNNING_ONLY)
        .returning(BatchRun.id, BatchRun.agent_id)
    )


async def claim_due_runs(
    *,
    session: AsyncSession,
    devices: Sequence[tuple[uuid.UUID, str]],
    now: datetime,
    trigger: RunTrigger,
    limit: int,
    cloud: bool = False,
) -> list[ClaimedRun]:
    """Claim the enabled agents due by `now` on the given (user, device) pairs (and, with
    `cloud`, every due cloud agent: they need no desktop), oldest first.

    Each claimed agent's `next_run_at` moves to its first slot after `now`, so
    slots missed while the device was away make one run, not one each. Rows
    another transaction holds are skipped, so concurrent claims never overlap;
    an agent whose run is still going keeps its slot taken but gets no second run.
    """
    if not devices and not cloud:
        return []
    connected = (
        func.unnest(
            bindparam("users", [user for user, _ in devices], type_=ARRAY(Uuid)),
            bindparam("devices", [device for _, device in devices], type_=ARRAY(String)),
        )
        .table_valued("user_id", "device_id")
        .render_derived(name="connected")
    )
    due = (
        await session.execute(
            select(
                BatchAgent.id,
                BatchAgent.user_id,
                BatchAgent.device_id,
                BatchAgent.schedule_cron,
                BatchAgent.timezone,
                BatchAgent.next_run_at,
            )
            .where(
                BatchAgent.enabled,
                BatchAgent.next_run_at <= now,
                or_(
                    tuple_(BatchAgent.user_id, BatchAgent.device_id).in_(
                        select(connected.c.user_id, connected.c.device_id)
                    ),
                    and_(literal(cloud), BatchAgent.device_id.is_(None)),
                ),
            )
            .order_by(BatchAgent.next_run_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
    ).all()
    if not due:
        await session.commit()
        return []
    await session.execute(
        update(BatchAgent),
        [
            {
                "id": agent.id,
                "next_run_at": next_run_after(agent.schedule_cron, agent.timezone, now),
            }
            for agent in due
        ],
    )
    started = (
        await session.execute(_new_runs(((a.id, a.user_id) for a in due), trigger, now))
    ).all()
    await session.commit()
    by_agent = {agent.id: agent for agent in due}
    return [
        ClaimedRun(
            run_id=run_id,
            agent_id=agent_id,
            user_id=by_agent[agent_id].user_id,
            device_id=by_agent[agent_id].device_id,
            trigger=trigger,
            due_at=by_agent[agent_id].next_run_at,
        )
        for run_id, agent_id in started
    ]


async def start_manual_run(
    *, session: AsyncSession, user_id: uuid.UUID, agent_id: uuid.UUID, now: datetime
) -> ClaimedRun:
    """A `running` row for a manual run; `RunAlreadyGoingError` when one is going."""
    agent = await _owned_agent(session=session, user_id=user_id, agent_id=agent_id)
    started = (
        await session.execute(_new_runs([(agent.id, user_id)], RunTrigger.MANUAL, now))
    ).first()
    await session.commit()
    if started is None:
        raise RunAlreadyGoingError
    return ClaimedRun(
        run_id=started.id,
        agent_id=agent.id,
        user_id=user_id,
        device_id=agent.device_id,
        trigger=RunTrigger.MANUAL,
    )


async def agent_device(
    *, session: AsyncSession, user_id: uuid.UUID, agent_id: uuid.UUID
) -> str | None:
    """The desktop an agent of the user runs on; None for a cloud agent (`AgentNotFoundError`
    when the agent is not the user's)."""
    agent = await _owned_agent(session=session, user_id=user_id, agent_id=agent_id)
    return agent.device_id


# -- the life of a run -------------------------------------------------------------


async def begin_run(*, session: AsyncSession, run_id: uuid.UUID, now: datetime) -> bool:
    """Mark a claimed run as started now; False when it is no longer `running`
    (recovered as interrupted while it waited, or its agent deleted)."""
    begun = await session.scalar(
        update(BatchRun)
        .where(BatchRun.id == run_id, BatchRun.status == RunStatus.RUNNING.value)
        .values(started_at=now, touched_at=now)
        .returning(BatchRun.id)
    )
    await session.commit()
    return begun is not None


async def touch_runs(*, session: AsyncSession, run_ids: Sequence[uuid.UUID], now: datetime) -> None:
    """Say these runs are still alive (their instance refreshes them every pass)."""
    if run_ids:
        await session.execute(
            update(BatchRun)
            .where(BatchRun.id.in_(run_ids), BatchRun.status == RunStatus.RUNNING.value)
            .values(touched_at=now)
        )
    await session.commit()


async def finish_run(
    *,
    session: AsyncSession,
    cipher: UserCipher,
    run_id: uuid.UUID,
    status: RunStatus,
    items_processed: int,
    items_created: int,
    errors: Sequence[str],
    now: datetime,
    items_waiting: int = 0,
) -> bool:
    """Record how a run ended, and when its agent ran last and runs next.

    Only a run still `running` is finished: one already recovered as
    interrupted keeps that verdict (False then).
    """
    finished = (
        await session.execute(
            update(BatchRun)
            .where(BatchRun.id == run_id, BatchRun.status == RunStatus.RUNNING.value)
            .values(
                status=status.value,
                items_processed=items_processed,
                items_created=items_created,
                items_waiting=items_waiting,
                errors_encrypted=cipher.encrypt(json.dumps(list(errors))) if errors else None,
                completed_at=now,
            )
            .returning(BatchRun.agent_id, BatchRun.started_at)
        )
    ).first()
    if finished is not None:
        agent = await session.get(BatchAgent, finished.agent_id, with_for_update=True)
        if agent is not None:
            agent.last_run_at = finished.started_at
            if agent.enabled:
                agent.next_run_at = next_run_after(agent.schedule_cron, agent.timezone, now)
    await session.commit()
    return finished is not None


async def recover_stale_runs(
    *, session: AsyncSession, keyring: MasterKeyring, stale_before: datetime, now: datetime
) -> int:
    """End as `error` (interrupted) every run no instance has refreshed since `stale_before`."""
    stale = (
        await session.scalars(
            select(BatchRun)
            .where(BatchRun.status == RunStatus.RUNNING.value, BatchRun.touched_at < stale_before)
            .with_for_update(skip_locked=True)
        )
    ).all()
    ciphers: dict[uuid.UUID, UserCipher] = {}
    for run in stale:
        if run.user_id not in ciphers:
            ciphers[run.user_id] = await UserCipher.for_user(
                session=session, keyring=keyring, user_id=run.user_id
            )
        cipher = ciphers[run.user_id]
        run.errors_encrypted = cipher.encrypt(json.dumps([*_errors(cipher, run), INTERRUPTED]))
        run.status = RunStatus.ERROR.value
        run.completed_at = now
    await session.commit()
    if stale:
        logger.warning(
            "batch runs orphaned by a stopped instance ended", extra={"runs": len(stale)}
        )
    return len(stale)


# -- what an agent already processed -------------------------------------------------


async def processed_digests(
    *, session: AsyncSession, agent_id: uuid.UUID, digests: Sequence[str]
) -> set[str]:
    """Those of `digests` the agent has already extracted from."""
    if not digests:
        return set()
    found = await session.scalars(
        select(ProcessedChunk.content_digest).where(
            ProcessedChunk.agent_id == agent_id, ProcessedChunk.content_digest.in_(digests)
        )
    )
    return set(found)


async def remember_processed(
    *, session: AsyncSession, agent_id: uuid.UUID, digests: Sequence[str]
) -> None:
    """Record that the agent extracted from these chunks, so later runs skip them."""
    if digests:
        await session.execute(
            insert(ProcessedChunk)
            .values([{"agent_id": agent_id, "content_digest": digest} for digest in digests])
            .on_conflict_do_nothing()
        )
    await session.commit()
