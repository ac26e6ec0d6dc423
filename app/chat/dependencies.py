"""The chat domain's dependencies: the service that runs turns and the engine behind it."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from app.chat.engine import ChatEngine
from app.chat.service import ChatService
from app.core.dependencies import from_state

ChatServiceDep = Annotated[ChatService, Depends(from_state("chat_service"))]
ChatEngineDep = Annotated[ChatEngine, Depends(from_state("chat_engine"))]
