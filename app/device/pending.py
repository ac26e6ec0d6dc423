"""Tool calls sent to a device and not yet answered."""

from __future__ import annotations

import asyncio
import uuid
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import Enum, auto
from typing import Any

from app.device.frames import ToolResult


@dataclass(slots=True)
class PendingCall:
    id: str
    request_id: str | None
    run_id: str | None
    future: asyncio.Future[dict[str, Any]] = field(repr=False)


# Ids of calls that ended without their answer (timed out, request cancelled),
# remembered so a late answer is told apart from one that was never asked for.
RECENTLY_CLOSED = 256


class Answer(Enum):
    """What became of a `tool_result`."""

    TAKEN = auto()  # handed to the waiting call
    LATE = auto()  # the call was issued here but is no longer waiting
    UNKNOWN = auto()  # no call with this id was issued here


class PendingCalls:
    """The calls one connection is waiting on, by call id.

    Only ids issued here can be answered here: a `tool_result` naming any
    other id is refused, so one device can never answer another's call.
    """

    def __init__(self) -> None:
        self._calls: dict[str, PendingCall] = {}
        self._closed: OrderedDict[str, None] = OrderedDict()

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

    def resolve(self, result: ToolResult) -> Answer:
        """Hand the result to its waiter, if a call with this id is still waiting."""
        call = self._calls.pop(result.id, None)
        if call is None or call.future.done():
            if result.id in self._closed:
                del self._closed[result.id]  # one late answer per call
                return Answer.LATE
            return Answer.UNKNOWN
        call.future.set_result(result.payload())
        return Answer.TAKEN

    def discard(self, call_id: str) -> None:
        """Stop waiting for a call (answered, timed out or abandoned)."""
        if self._calls.pop(call_id, None) is not None:
            self._remember_closed(call_id)

    def _remember_closed(self, call_id: str) -> None:
        self._closed[call_id] = None
        if len(self._closed) > RECENTLY_CLOSED:
            self._closed.popitem(last=False)

    def fail_request(self, request_id: str, error: BaseException) -> None:
        """Fail every call made for one chat request (it was cancelled or ended)."""
        for call in [c for c in self._calls.values() if c.request_id == request_id]:
            self._fail(call, error)

    def fail_all(self, error: BaseException) -> None:
        """Fail every call at once (the device disconnected)."""
        for call in list(self._calls.values()):
            self._fail(call, error)

    def _fail(self, call: PendingCall, error: BaseException) -> None:
        self.discard(call.id)
        if not call.future.done():
            call.future.set_exception(error)
