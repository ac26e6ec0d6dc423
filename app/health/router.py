"""Liveness and dependency checks for load balancers, orchestrators and the desktop app.

`/health/live` says the process answers (a container's HEALTHCHECK, a liveness
probe); `/health/ready` that it can serve: the database answers and is at the
migration this server ships (a readiness probe, a load balancer). `/health`
is the overview the desktop app shows.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Literal

from fastapi import APIRouter, Response, status
from pydantic import BaseModel
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from app import __version__
from app.chat.dependencies import ChatEngineDep
from app.core import migrations
from app.core.database import DATABASE_RETRY_AFTER_S
from app.core.dependencies import EngineDep, SettingsDep
from app.core.responses import EVERY_ROUTE, ErrorDetail, error
from app.memory.turns import associative_enabled

router = APIRouter(tags=["health"], responses=EVERY_ROUTE)
logger = logging.getLogger(__name__)

DATABASE_CHECK_TIMEOUT_S = 2.0


class Live(BaseModel):
    status: Literal["ok"]


class Ready(BaseModel):
    status: Literal["ok", "not_ready"]
    reason: str | None = None


class Health(BaseModel):
    status: Literal["ok", "degraded"]
    version: str
    database: Literal["ok", "unavailable"]
    llm: Literal["configured", "not_configured"]
    embeddings: Literal["configured", "not_configured"]


async def _database_answers(engine: AsyncEngine) -> bool:
    try:
        async with asyncio.timeout(DATABASE_CHECK_TIMEOUT_S), engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
    except Exception as exc:
        logger.warning("database health check failed", extra={"error": type(exc).__name__})
        return False
    return True


@router.get(
    "/health",
    # `Health` when a dependency is down; the shared error shape when the server sheds load.
    responses=error(
        503, "A dependency is down, or the server is overloaded.", model=Health | ErrorDetail
    ),
)
async def health(
    response: Response, engine: EngineDep, chat_engine: ChatEngineDep, settings: SettingsDep
) -> Health:
    """`ok` when every dependency answers; otherwise 503 and `degraded`.

    `llm` says whether a language model is configured; without one the server
    runs, but chat answers `llm_not_configured`. `embeddings` likewise for the
    embedding model: without it associative memory and note indexing are off.
    """
    database_ok = await _database_answers(engine)
    if not database_ok:
        response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
        response.headers["Retry-After"] = str(DATABASE_RETRY_AFTER_S)
    return Health(
        status="ok" if database_ok else "degraded",
        version=__version__,
        database="ok" if database_ok else "unavailable",
        llm="configured" if chat_engine.supervisors else "not_configured",
        embeddings="configured" if associative_enabled(settings) else "not_configured",
    )


@router.get("/health/live")
async def live() -> Live:
    """The process answers; touches no dependency, so a database outage never restarts it."""
    return Live(status="ok")


async def _not_ready_because(engine: AsyncEngine) -> str | None:
    expected = await asyncio.to_thread(migrations.head_revision)
    try:
        async with asyncio.timeout(DATABASE_CHECK_TIMEOUT_S), engine.connect() as conn:
            current = await migrations.database_revision(conn)
    except Exception as exc:
        logger.warning("readiness check failed", extra={"error": type(exc).__name__})
        return "the database does not answer"
    if current != expected:
        return f"the database is at migration {current or 'none'}; this server needs {expected}"
    return None


@router.get(
    "/health/ready",
    responses=error(
        503,
        "Not ready: the database does not answer or is not at this server's migration; "
        "or the server is overloaded.",
        model=Ready | ErrorDetail,
    ),
)
async def ready(response: Response, engine: EngineDep) -> Ready:
    """`ok` when the database answers and is at the newest migration this server ships.

    Otherwise 503, `not_ready` and the reason.
    """
    reason = await _not_ready_because(engine)
    if reason is None:
        return Ready(status="ok")
    response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    response.headers["Retry-After"] = str(DATABASE_RETRY_AFTER_S)
    return Ready(status="not_ready", reason=reason)
