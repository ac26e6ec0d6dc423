"""A greeted device connection as the rest of the server uses it: send, call, close.

The asyncio side of pending tool calls lives here: `call` waits on a future
that `deliver` completes when the protocol core has matched a `tool_result` to
the call. The core (`app.device.pending`) keeps only the bookkeeping. Batch
runs are reached the same way: `open_run` names who receives a run's
`agent_data` / `agent_complete`, `deliver_run` hands them over, and
`disconnected` tells a run the moment the device goes away.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from app.device.protocol import DeviceProtocol
from protocol.frames import (
    AgentComplete,
    AgentData,
    ServerFrame,
    Table,
    ToolAction,
    ToolCall,
    ToolResult,
)

RunFrame = AgentData | AgentComplete
RunListener = Callable[[RunFrame], None]
"""Receives the frames of one batch run, in arrival order, on the event loop."""


@dataclass(eq=False, slots=True)
class DeviceLink:
    """One open, greeted connection: what other code needs to use a device."""

    user_id: uuid.UUID
    device_id: str
    protocol: DeviceProtocol
    send: Callable[[ServerFrame], Awaitable[None]]
    close: Callable[[int, str], Awaitable[None]]
    last_active: float = field(default_factory=time.monotonic)
    # Set once the connection has ended: runs on this device stop at once.
    disconnected: asyncio.Event = field(default_factory=asyncio.Event, init=False, repr=False)
    _waiting: dict[str, asyncio.Future[dict[str, Any]]] = field(
        default_factory=dict, init=False, repr=False
    )
    _runs: dict[str, RunListener] = field(default_factory=dict, init=False, repr=False)

    def touch(self) -> None:
        self.last_active = time.monotonic()

    async def call(
        self,
        action: ToolAction,
        *,
        table: Table | str | None = None,
        data: dict[str, Any] | None = None,
        filters: dict[str, Any] | None = None,
        vector: list[float] | None = None,
        limit: int | None = None,
        request_id: str | None = None,
        run_id: str | None = None,
    ) -> dict[str, Any]:
        """Send one `tool_call` and wait for its result payload (no time limit here).

        Cancelling the wait (a time-out, the request cancelled) closes the call:
        an answer arriving afterwards is only a late one.
        """
        pending = self.protocol.pending.open(request_id=request_id, run_id=run_id)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting[pending.id] = future
        try:
            await self.send(
                ToolCall(
                    id=pending.id,
                    action=action,
                    table=table,
                    data=data,
                    filters=filters,
                    vector=vector,
                    limit=limit,
                    request_id=request_id,
                    run_id=run_id,
                )
            )
            return await future
        finally:
            del self._waiting[pending.id]
            self.protocol.pending.close(pending.id)

    def deliver(self, result: ToolResult) -> None:
        """Hand a result the protocol core took for a waiting call to its waiter."""
        future = self._waiting.get(result.id)
        if future is not None and not future.done():
            future.set_result(result.payload())

    def fail_request(self, request_id: str, error: BaseException) -> None:
        """Fail every call made for one chat request (it was cancelled or ended)."""
        for call in self.protocol.pending.of_request(request_id):
            self._fail(call.id, error)

    def fail_all(self, error: BaseException) -> None:
        """Fail every call at once and tell every run (the device disconnected)."""
        self.disconnected.set()
        for call in self.protocol.pending:
            self._fail(call.id, error)

    def open_run(self, run_id: str, listener: RunListener) -> None:
        """Accept the device's frames for `run_id` from now on, handed to `listener`."""
        self._runs[run_id] = listener
        self.protocol.run_started(run_id)

    def close_run(self, run_id: str) -> None:
        """The run ended: later frames for it are refused as `unknown_run`."""
        self._runs.pop(run_id, None)
        self.protocol.run_finished(run_id)

    def deliver_run(self, frame: RunFrame) -> None:
        """Hand a run frame the protocol core accepted to the run's listener."""
        listener = self._runs.get(frame.run_id)
        if listener is not None:
            listener(frame)

    def _fail(self, call_id: str, error: BaseException) -> None:
        self.protocol.pending.close(call_id)
        future = self._waiting.get(call_id)
        if future is not None and not future.done():
            future.set_exception(error)
