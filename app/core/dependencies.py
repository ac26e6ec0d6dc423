"""FastAPI dependencies shared by every domain, declared once as `Annotated` aliases.

Routes get what the lifespan built through these (and their domain's own
aliases, e.g. `app.auth.dependencies`, `app.chat.dependencies`), never by
reading `app.state` themselves. Each takes an `HTTPConnection`, so the same
aliases serve HTTP routes and WebSocket endpoints.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any

from fastapi import Depends
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from starlette.requests import HTTPConnection

from app.core.keys import MasterKeyring
from app.core.settings import ResolvedSettings


def from_state(name: str) -> Callable[[HTTPConnection], Any]:
    """A dependency giving what the lifespan stored as `app.state.<name>`.

    Its type is the one the `Annotated` alias declares; every alias of every
    domain is built from this, so `app.state` is read in this one place.
    """

    def dependency(conn: HTTPConnection) -> Any:
        return getattr(conn.app.state, name)

    return dependency


_sessionmaker = from_state("sessionmaker")


async def _session(
    sessionmaker: Annotated[async_sessionmaker[AsyncSession], Depends(_sessionmaker)],
) -> AsyncIterator[AsyncSession]:
    async with sessionmaker() as session:
        yield session


SettingsDep = Annotated[ResolvedSettings, Depends(from_state("settings"))]
KeyringDep = Annotated[MasterKeyring, Depends(from_state("keyring"))]
EngineDep = Annotated[AsyncEngine, Depends(from_state("engine"))]
# For work that outlives one request's session (a socket opens one per message).
SessionmakerDep = Annotated[async_sessionmaker[AsyncSession], Depends(_sessionmaker)]
SessionDep = Annotated[AsyncSession, Depends(_session)]
