"""A desktop for the tool tests: a real device link answered from an in-memory LocalStore."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from langchain_core.tools import BaseTool

from app.device.calls import CallTarget
from app.device.link import DeviceLink
from app.device.pending import Answer as Delivery
from app.device.protocol import DeviceProtocol, ProtocolLimits
from devclient.store import LocalStore
from protocol.frames import ServerFrame, ToolCall, ToolResult
from tools.context import turn_context


def ms(instant: str) -> int:
    """Unix ms of an ISO date-time with an explicit offset, computed independently of tools/."""
    moment = datetime.fromisoformat(instant)
    assert moment.tzinfo is not None
    return int(moment.timestamp()) * 1000 + moment.microsecond // 1000


CREATED_AT_MS = ms("2026-11-18T09:30:00+00:00")  # every row's createdAt, so answers are stable

Answer = Callable[[ToolCall], dict[str, Any] | None]


class StoreDesktop:
    """A device link whose tool calls are answered as the desktop app would.

    Every `tool_call` is recorded as the JSON the socket would carry. By
    default it is answered from `store`; a test may set `answer` to script a
    reply instead, or to return None and leave the call unanswered.
    """

    def __init__(self) -> None:
        self.store = LocalStore(":memory:", clock=lambda: CREATED_AT_MS)
        self.frames: list[dict[str, Any]] = []
        self.answer: Answer = self._from_store
        self.link = DeviceLink(
            user_id=uuid.uuid4(),
            device_id="desk",
            protocol=DeviceProtocol(limits=ProtocolLimits()),
            send=self._send,
            close=self._close,
        )

    def target(self, timeout_s: float = 2.0) -> CallTarget:
        """A request's calls to this desktop, as the connection makes them."""
        return CallTarget(link=self.link, timeout_s=timeout_s, request_id="r1")

    @contextmanager
    def connected(self, timeout_s: float = 2.0) -> Iterator[CallTarget]:
        """Bind this desktop for the tools, as the chat layer binds a request's."""
        target = self.target(timeout_s)
        with turn_context(desktop=target.execute, returned_ids=target.returned_ids):
            yield target

    def seed(self, table: str, **data: Any) -> dict[str, Any]:
        """Insert a row straight into the store, without a tool call."""
        row: dict[str, Any] = self.store.execute(action="insert", table=table, data=data)["row"]
        return row

    def sent(self) -> list[dict[str, Any]]:
        """Every tool_call so far, as on the wire, without the envelope (type, ids)."""
        envelope = {"type", "id", "request_id"}
        return [{k: v for k, v in f.items() if k not in envelope} for f in self.frames]

    def _from_store(self, call: ToolCall) -> dict[str, Any]:
        return self.store.execute(
            action=call.action.value,
            table=call.table,
            data=call.data,
            filters=call.filters,
            vector=call.vector,
            limit=call.limit,
        )

    async def _send(self, frame: ServerFrame) -> None:
        assert isinstance(frame, ToolCall)
        wire = json.loads(frame.to_json())
        assert wire["request_id"] == "r1"
        self.frames.append(wire)
        result = self.answer(frame)
        if result is not None:
            answer = ToolResult(id=frame.id, **result)
            assert self.link.protocol.pending.take(answer) is Delivery.TAKEN
            self.link.deliver(answer)

    async def _close(self, code: int, reason: str) -> None:
        pass


async def run(tool: BaseTool, **arguments: Any) -> str:
    """Call a tool the way the graph does, and return its text."""
    text = await tool.ainvoke(arguments)
    assert isinstance(text, str)
    return text
