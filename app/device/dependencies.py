"""The device domain's `Annotated` dependencies (see `app.core.dependencies`)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends
from starlette.requests import HTTPConnection

from app.device.connection import ChatHandler
from app.device.registry import DeviceRegistry


def _device_registry(conn: HTTPConnection) -> DeviceRegistry:
    registry: DeviceRegistry = conn.app.state.device_registry
    return registry


def _chat_handler(conn: HTTPConnection) -> ChatHandler:
    handler: ChatHandler = conn.app.state.chat_handler
    return handler


DeviceRegistryDep = Annotated[DeviceRegistry, Depends(_device_registry)]
# What a device's chat request runs: the chat service, or a test's scripted turn.
ChatHandlerDep = Annotated[ChatHandler, Depends(_chat_handler)]
