"""FastAPI dependencies shared by every domain, declared once as `Annotated` aliases.

Routes get what the lifespan built through these (and their domain's own
aliases, e.g. `app.auth.dependencies`, `app.chat.dependencies`), never by
reading `app.state` themselves. Each takes an `HTTPConnection`, so the same
aliases serve HTTP routes and WebSocket endpoints.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from starlette.requests import HTTPConnection

from app.core.keys import MasterKeyring
from app.core.settings import ResolvedSettings


def _settings(conn: HTTPConnection) -> ResolvedSettings:
    settings: ResolvedSettings = conn.app.state.settings
    return settings


def _keyring(conn: HTTPConnection) -> MasterKeyring:
    keyring: MasterKeyring = conn.app.state.keyring
    return keyring


def _engine(conn: HTTPConnection) -> AsyncEngine:
    engine: AsyncEngine = conn.app.state.engine
    return engine


def _sessionmaker(conn: HTTPConnection) -> async_sessionmaker[AsyncSession]:
    sessionmaker: async_sessionmaker[AsyncSession] = conn.app.state.sessionmaker
    return sessionmaker


async def _session(
    sessionmaker: Annotated[async_sessionmaker[AsyncSession], Depends(_sessionmaker)],
) -> AsyncIterator[AsyncSession]:
    async with sessionmaker() as session:
        yield session


SettingsDep = Annotated[ResolvedSettings, Depends(_settings)]
KeyringDep = Annotated[MasterKeyring, Depends(_keyring)]
EngineDep = Annotated[AsyncEngine, Depends(_engine)]
# For work that outlives one request's session (a socket opens one per message).
SessionmakerDep = Annotated[async_sessionmaker[AsyncSession], Depends(_sessionmaker)]
SessionDep = Annotated[AsyncSession, Depends(_session)]
