"""Batch-agent endpoints (SPEC §5): the catalog, local agents, run logs, the manual trigger."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Query, Response, status

from app.auth.dependencies import CurrentUser
from app.batch import service
from app.batch.dependencies import BatchSchedulerDep, UserCipherDep
from app.batch.models import AgentType
from app.batch.schemas import (
    CatalogEntry,
    CloudAgentCreate,
    CloudAgentRead,
    CloudAgentUpdate,
    GmailAgentCreate,
    LocalAgentCreate,
    LocalAgentRead,
    LocalAgentUpdate,
    OutlookAgentCreate,
    RunPage,
    RunStarted,
    TeamsAgentCreate,
)
from app.core.dependencies import SessionDep, SettingsDep
from app.core.responses import AUTHENTICATED, EVERY_ROUTE, JSON_BODY, error

router = APIRouter(prefix="/agents", tags=["batch agents"], responses=EVERY_ROUTE)

NOT_FOUND = error(404, "No agent with this id belongs to the signed-in user.")
UNKNOWN_CONNECTION = error(
    400, "encrypted_token names no connection of the signed-in user to the agent's provider."
)
OVER_PLAN_LIMIT = error(
    403,
    "The agent would be enabled past the plan's limit on enabled batch agents (local and"
    " cloud together); `detail` names the plan and the limit. Disabling always works.",
)
MAX_RUNS_PER_PAGE = 100

CATALOG = [
    CatalogEntry(
        type=AgentType.LOCAL_DIRECTORY,
        name="Local folders",
        description="Reads Markdown and text files in folders on one of your computers, through"
        " the desktop app, and suggests tasks, notes, milestones and projects from them.",
        config_schema=LocalAgentCreate.model_json_schema(),
    ),
    CatalogEntry(
        type=AgentType.GMAIL,
        name="Gmail",
        description="Reads new mail in your Gmail account and suggests what to do about it.",
        config_schema=GmailAgentCreate.model_json_schema(),
    ),
    CatalogEntry(
        type=AgentType.OUTLOOK,
        name="Outlook",
        description="Reads new mail in your Outlook mailbox and suggests what to do about it.",
        config_schema=OutlookAgentCreate.model_json_schema(),
    ),
    CatalogEntry(
        type=AgentType.TEAMS,
        name="Microsoft Teams",
        description="Reads your Teams messages and suggests tasks and notes from them.",
        config_schema=TeamsAgentCreate.model_json_schema(),
    ),
]


def _now() -> datetime:
    return datetime.now(UTC)


@router.get("/catalog", responses=AUTHENTICATED)
async def catalog(user: CurrentUser) -> list[CatalogEntry]:
    """The agent types, each with the JSON Schema of its configuration."""
    return CATALOG


@router.get("/local", responses=AUTHENTICATED)
async def list_local(
    user: CurrentUser, session: SessionDep, cipher: UserCipherDep
) -> list[LocalAgentRead]:
    """The signed-in user's local-directory agents, oldest first."""
    return await service.list_local_agents(session=session, cipher=cipher, user_id=user.id)


@router.post(
    "/local",
    status_code=status.HTTP_201_CREATED,
    responses={**AUTHENTICATED, **JSON_BODY, **OVER_PLAN_LIMIT},
)
async def create_local(
    body: LocalAgentCreate,
    user: CurrentUser,
    session: SessionDep,
    cipher: UserCipherDep,
    settings: SettingsDep,
) -> LocalAgentRead:
    """Create a local-directory agent; its schedule is read in `timezone` (default: the user's)."""
    return await service.create_local_agent(
        session=session,
        cipher=cipher,
        user_id=user.id,
        body=body,
        settings=settings,
        now=_now(),
    )


@router.put(
    "/local/{agent_id}",
    responses={**AUTHENTICATED, **JSON_BODY, **NOT_FOUND, **OVER_PLAN_LIMIT},
)
async def update_local(
    agent_id: uuid.UUID,
    body: LocalAgentUpdate,
    user: CurrentUser,
    session: SessionDep,
    cipher: UserCipherDep,
    settings: SettingsDep,
) -> LocalAgentRead:
    """Change a local agent: only the fields given change."""
    return await service.update_local_agent(
        session=session,
        cipher=cipher,
        user_id=user.id,
        agent_id=agent_id,
        body=body,
        settings=settings,
        now=_now(),
    )


@router.delete(
    "/local/{agent_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={**AUTHENTICATED, **NOT_FOUND},
)
@router.delete(
    "/cloud/{agent_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={**AUTHENTICATED, **NOT_FOUND},
)
async def delete_agent(
    agent_id: uuid.UUID, user: CurrentUser, session: SessionDep, scheduler: BatchSchedulerDep
) -> Response:
    """Delete an agent with its run logs; a run of it going on this server stops."""
    await service.delete_agent(session=session, user_id=user.id, agent_id=agent_id)
    scheduler.stop_agent(agent_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/cloud", responses=AUTHENTICATED)
async def list_cloud(
    user: CurrentUser, session: SessionDep, cipher: UserCipherDep
) -> list[CloudAgentRead]:
    """The signed-in user's cloud-connector agents, oldest first."""
    return await service.list_cloud_agents(session=session, cipher=cipher, user_id=user.id)


@router.post(
    "/cloud",
    status_code=status.HTTP_201_CREATED,
    responses={**AUTHENTICATED, **JSON_BODY, **UNKNOWN_CONNECTION, **OVER_PLAN_LIMIT},
)
async def create_cloud(
    body: CloudAgentCreate,
    user: CurrentUser,
    session: SessionDep,
    cipher: UserCipherDep,
    settings: SettingsDep,
) -> CloudAgentRead:
    """Create a Gmail, Outlook or Teams agent over a connection made with `/oauth/{provider}`."""
    return await service.create_cloud_agent(
        session=session,
        cipher=cipher,
        user_id=user.id,
        body=body,
        settings=settings,
        now=_now(),
    )


@router.put(
    "/cloud/{agent_id}",
    responses={
        **AUTHENTICATED,
        **JSON_BODY,
        **NOT_FOUND,
        **UNKNOWN_CONNECTION,
        **OVER_PLAN_LIMIT,
    },
)
async def update_cloud(
    agent_id: uuid.UUID,
    body: CloudAgentUpdate,
    user: CurrentUser,
    session: SessionDep,
    cipher: UserCipherDep,
    settings: SettingsDep,
) -> CloudAgentRead:
    """Change a cloud agent: only the fields given change; a `filter_config` of another
    provider than the agent's is a 422."""
    return await service.update_cloud_agent(
        session=session,
        cipher=cipher,
        user_id=user.id,
        agent_id=agent_id,
        body=body,
        settings=settings,
        now=_now(),
    )


@router.get("/runs", responses={**AUTHENTICATED, **NOT_FOUND})
async def list_runs(
    user: CurrentUser,
    session: SessionDep,
    cipher: UserCipherDep,
    agent_id: uuid.UUID | None = None,
    page: Annotated[int, Query(ge=1, le=100_000)] = 1,
    limit: Annotated[int, Query(ge=1, le=MAX_RUNS_PER_PAGE)] = 20,
) -> RunPage:
    """Run logs, newest first: all of the user's, or one agent's."""
    return await service.list_runs(
        session=session, cipher=cipher, user_id=user.id, agent_id=agent_id, page=page, limit=limit
    )


@router.post(
    "/{agent_id}/run",
    status_code=status.HTTP_202_ACCEPTED,
    responses={
        **AUTHENTICATED,
        **NOT_FOUND,
        **error(409, "The agent's desktop is not connected, or a run of it is already going."),
        **error(
            503,
            "No language model is configured, or the server is temporarily unavailable.",
        ),
    },
)
async def run_now(
    agent_id: uuid.UUID, user: CurrentUser, scheduler: BatchSchedulerDep
) -> RunStarted:
    """Start a run now; follow it in `GET /agents/runs`."""
    return RunStarted(run_id=await scheduler.start_manual(user_id=user.id, agent_id=agent_id))
