"""The chat domain's dependencies: the service that runs turns and the engine behind it."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends
from starlette.requests import HTTPConnection

from app.chat.engine import ChatEngine
from app.chat.service import ChatService


def _chat_service(conn: HTTPConnection) -> ChatService:
    service: ChatService = conn.app.state.chat_service
    return service


def _chat_engine(conn: HTTPConnection) -> ChatEngine:
    engine: ChatEngine = conn.app.state.chat_engine
    return engine


ChatServiceDep = Annotated[ChatService, Depends(_chat_service)]
ChatEngineDep = Annotated[ChatEngine, Depends(_chat_engine)]
