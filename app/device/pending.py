"""Tool calls sent to a device and not yet answered."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from app.device.frames import ToolResult


@dataclass(slots=True)
class PendingCall:
    id: str
    request_id: str | None
    run_id: str | None
    future: asyncio.Future[dict[str, Any]] = field(repr=False)


class PendingCalls:
    """The calls one connection is waiting on, by call id.

    Only ids issued here can be answered here: a `tool_result` naming any
    other id is refused, so one device can never answer another's call.
    """

    def __init__(self) -> None:
        self._calls: dict[str, PendingCall] = {}

    def __len__(self) -> int:
        return len(self._calls)

    def __iter__(self) -> Iterator[PendingCall]:
        return iter(list(self._calls.values()))

    def open(self, *, request_id: str | None = None, run_id: str | None = None) -> PendingCall:
        call = PendingCall(
            id=uuid.uuid4().hex,
            request_id=request_id,
            run_id=run_id,
            future=asyncio.get_running_loop().create_future(),
        )
        self._calls[call.id] = call
        return call

    def resolve(self, result: ToolResult) -> bool:
        """Hand the result to its waiter; False if the id was never issued (or is done)."""
        call = self._calls.pop(result.id, None)
        if call is None or call.future.done():
            return False
        call.future.set_result(result.payload())
        return True

    def discard(self, call_id: str) -> None:
        self._calls.pop(call_id, None)

    def fail_request(self, request_id: str, error: BaseException) -> None:
        """Fail every call made for one chat request (it was cancelled or ended)."""
        for call in [c for c in self._calls.values() if c.request_id == request_id]:
            self._fail(call, error)

    def fail_all(self, error: BaseException) -> None:
        """Fail every call at once (the device disconnected)."""
        for call in list(self._calls.values()):
            self._fail(call, error)

    def _fail(self, call: PendingCall, error: BaseException) -> None:
        self._calls.pop(call.id, None)
        if not call.future.done():
            call.future.set_exception(error)
