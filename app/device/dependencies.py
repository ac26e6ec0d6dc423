"""The device domain's `Annotated` dependencies (see `app.core.dependencies`)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from app.core.dependencies import from_state
from app.device.connection import ChatHandler, HelloHandler
from app.device.registry import DeviceRegistry

DeviceRegistryDep = Annotated[DeviceRegistry, Depends(from_state("device_registry"))]
# What a device's chat request runs: the chat service, or a test's scripted turn.
ChatHandlerDep = Annotated[ChatHandler, Depends(from_state("chat_handler"))]
# What a device's hello starts: batch agents catching up (None: nothing).
HelloHandlerDep = Annotated[HelloHandler | None, Depends(from_state("hello_handler"))]
