"""Liveness and dependency checks for load balancers and the desktop app."""

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
from app.core.database import DATABASE_RETRY_AFTER_S
from app.core.dependencies import EngineDep, SettingsDep
from app.core.responses import EVERY_ROUTE, ErrorDetail, error
from app.memory.turns import associative_enabled

router = APIRouter(tags=["health"], responses=EVERY_ROUTE)
logger = logging.getLogger(__name__)

DATABASE_CHECK_TIMEOUT_S = 2.0


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
