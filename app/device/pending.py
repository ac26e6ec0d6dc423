"""Tool calls sent to a device and not yet answered: bookkeeping only, no I/O.

The adapter (`app.device.link`) keeps what waits for each answer; this core
only knows which call ids were issued on the connection, for which request,
and which of them are still open.
"""

from __future__ import annotations

import uuid
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from enum import Enum, auto

from protocol.frames import ToolResult

# Ids of calls that ended without their answer (timed out, request cancelled),
# remembered so a late answer is told apart from one that was never asked for.
RECENTLY_CLOSED = 256


@dataclass(frozen=True, slots=True)
class PendingCall:
    id: str
    request_id: str | None
    run_id: str | None


class Answer(Enum):
    """What became of a `tool_result`."""

    TAKEN = auto()  # it answers a call that is waiting
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
        call = PendingCall(id=uuid.uuid4().hex, request_id=request_id, run_id=run_id)
        self._calls[call.id] = call
        return call

    def take(self, result: ToolResult) -> Answer:
        """Whether `result` answers a waiting call; a taken call stops waiting."""
        if self._calls.pop(result.id, None) is not None:
            return Answer.TAKEN
        if result.id in self._closed:
            del self._closed[result.id]  # one late answer per call
            return Answer.LATE
        return Answer.UNKNOWN

    def close(self, call_id: str) -> None:
        """Stop waiting for a call (timed out or abandoned); a later answer is late."""
        if self._calls.pop(call_id, None) is not None:
            self._closed[call_id] = None
            if len(self._closed) > RECENTLY_CLOSED:
                self._closed.popitem(last=False)

    def of_request(self, request_id: str) -> list[PendingCall]:
        return [call for call in self._calls.values() if call.request_id == request_id]
