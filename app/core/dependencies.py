"""FastAPI dependencies shared by every domain, declared once as `Annotated` aliases.

They read what the lifespan put on `app.state`, and take an `HTTPConnection`
so the same aliases serve HTTP routes and WebSocket endpoints.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.requests import HTTPConnection

from app.core.keys import MasterKeyring
from app.core.settings import Settings


def _settings(conn: HTTPConnection) -> Settings:
    settings: Settings = conn.app.state.settings
    return settings


def _keyring(conn: HTTPConnection) -> MasterKeyring:
    keyring: MasterKeyring = conn.app.state.keyring
    return keyring


async def _session(conn: HTTPConnection) -> AsyncIterator[AsyncSession]:
    sessionmaker: async_sessionmaker[AsyncSession] = conn.app.state.sessionmaker
    async with sessionmaker() as session:
        yield session


SettingsDep = Annotated[Settings, Depends(_settings)]
KeyringDep = Annotated[MasterKeyring, Depends(_keyring)]
SessionDep = Annotated[AsyncSession, Depends(_session)]
