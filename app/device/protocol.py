"""The device protocol without a socket: parsing, the rules, the bookkeeping.

`DeviceProtocol` is fed raw text frames and the clock, and answers with what to
send back and what to act on. It never touches I/O, so every rule of the
protocol is tested without a socket; `app.device.connection` is the thin
adapter that moves frames between it and a real WebSocket.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import Enum, auto

from pydantic import ValidationError

from app.device.frames import (
    AgentComplete,
    AgentData,
    Cancel,
    ClientFrame,
    DeviceHello,
    Error,
    ErrorCode,
    FloatingRequest,
    HomeRequest,
    Ping,
    Pong,
    ServerFrame,
    ToolResult,
    client_frame_adapter,
)
from app.device.pending import PendingCalls

logger = logging.getLogger(__name__)

ChatRequest = HomeRequest | FloatingRequest
RATE_WINDOW_S = 60.0
# Heartbeats and answers to our own calls are never rate limited: refusing them
# would break the connection or the server's own requests.
_UNLIMITED_FRAMES = (Ping, Pong, ToolResult)


@dataclass(frozen=True, slots=True)
class ProtocolLimits:
    max_frame_bytes: int = 1024 * 1024
    messages_per_minute: int = 100
    max_inflight_requests: int = 4
    ping_interval_s: float = 30.0
    idle_timeout_s: float = 90.0


class State(Enum):
    AWAITING_HELLO = auto()
    READY = auto()


class Heartbeat(Enum):
    NOTHING = auto()
    SEND_PING = auto()
    CLOSE = auto()


@dataclass(slots=True)
class Received:
    """The outcome of one incoming frame."""

    replies: list[ServerFrame] = field(default_factory=list)
    frame: ClientFrame | None = None  # a frame for the application to act on


class SlidingWindowLimiter:
    """At most `limit` events in any `window_s` seconds."""

    def __init__(self, limit: int, window_s: float, clock: Callable[[], float]) -> None:
        self._limit = limit
        self._window_s = window_s
        self._clock = clock
        self._events: deque[float] = deque()

    def acquire(self) -> float | None:
        """Record an event; None if allowed, else seconds until one would be."""
        now = self._clock()
        while self._events and now - self._events[0] >= self._window_s:
            self._events.popleft()
        if len(self._events) >= self._limit:
            return round(self._window_s - (now - self._events[0]), 3)
        self._events.append(now)
        return None


def _request_id_of(raw: object) -> str | None:
    """The request id of a frame that failed validation, if one can be read."""
    if isinstance(raw, dict):
        candidate = raw.get("request_id")
        if isinstance(candidate, str) and 0 < len(candidate) <= 128:
            return candidate
    return None


def _validation_message(exc: ValidationError) -> str:
    first = exc.errors()[0]
    where = ".".join(str(part) for part in first["loc"][1:]) or "frame"
    return f"{where}: {first['msg']}"


def now_iso() -> str:
    return datetime.now(UTC).isoformat()


class DeviceProtocol:
    """The state of one device connection, driven by frames and time."""

    def __init__(
        self, *, limits: ProtocolLimits, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.limits = limits
        self.state = State.AWAITING_HELLO
        self.device_id: str | None = None
        self.agent_ids: list[str] = []
        self.pending = PendingCalls()
        self.inflight: set[str] = set()
        self.runs: set[str] = set()
        self._clock = clock
        self._limiter = SlidingWindowLimiter(limits.messages_per_minute, RATE_WINDOW_S, clock)
        self._last_seen = clock()
        self._last_ping = clock()

    # -- incoming ------------------------------------------------------------

    def receive_text(self, text: str) -> Received:
        self._last_seen = self._clock()
        # A str has at most 4 bytes per character: only encode when it could be too big.
        if len(text) * 4 > self.limits.max_frame_bytes and (
            len(text.encode()) > self.limits.max_frame_bytes
        ):
            return self._error(
                ErrorCode.FRAME_TOO_LARGE,
                f"frames are limited to {self.limits.max_frame_bytes} bytes",
            )
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as exc:
            return self._error(ErrorCode.INVALID_JSON, f"frame is not valid JSON: {exc.msg}")
        return self._receive_json(raw)

    def receive_bytes(self) -> Received:
        self._last_seen = self._clock()
        return self._error(ErrorCode.INVALID_FRAME, "frames are JSON text messages, not binary")

    def _receive_json(self, raw: object) -> Received:
        if not isinstance(raw, dict):
            return self._error(ErrorCode.INVALID_FRAME, "a frame is a JSON object with a 'type'")
        try:
            frame = client_frame_adapter.validate_python(raw)
        except ValidationError as exc:
            request_id = _request_id_of(raw)
            if any(e["type"] in {"union_tag_invalid", "union_tag_not_found"} for e in exc.errors()):
                kind = raw.get("type")
                message = f"unknown frame type {kind!r}" if kind else "frame has no 'type' field"
                return self._error(ErrorCode.UNKNOWN_TYPE, message, request_id=request_id)
            return self._error(
                ErrorCode.INVALID_FRAME, _validation_message(exc), request_id=request_id
            )
        if not isinstance(frame, _UNLIMITED_FRAMES):
            retry_after = self._limiter.acquire()
            if retry_after is not None:
                return self._error(
                    ErrorCode.RATE_LIMITED,
                    f"more than {self.limits.messages_per_minute} frames per minute",
                    request_id=_request_id_of(raw),
                    retry_after=retry_after,
                )
        return self._dispatch(frame)

    def _dispatch(self, frame: ClientFrame) -> Received:
        if isinstance(frame, Ping):
            return Received(replies=[Pong(timestamp=now_iso())])
        if isinstance(frame, Pong):
            return Received()
        if isinstance(frame, DeviceHello):
            return self._hello(frame)
        if self.state is State.AWAITING_HELLO:
            return self._error(
                ErrorCode.HELLO_REQUIRED,
                "the first frame must be device_hello",
                request_id=getattr(frame, "request_id", None),
            )
        if isinstance(frame, ToolResult):
            if not self.pending.resolve(frame):
                logger.warning("tool_result for a call not issued here; ignored")
            return Received()
        if isinstance(frame, HomeRequest | FloatingRequest):
            return self._chat_request(frame)
        if isinstance(frame, Cancel):
            if frame.request_id not in self.inflight:
                return self._error(
                    ErrorCode.UNKNOWN_REQUEST,
                    "no request with this id is running",
                    request_id=frame.request_id,
                )
            return Received(frame=frame)
        if isinstance(frame, AgentData | AgentComplete):
            if frame.run_id not in self.runs:
                return self._error(
                    ErrorCode.UNKNOWN_RUN, f"no batch run {frame.run_id!r} on this connection"
                )
            return Received(frame=frame)
        msg = f"unhandled frame {frame!r}"  # unreachable while the union is covered above
        raise AssertionError(msg)

    def _hello(self, frame: DeviceHello) -> Received:
        if self.state is State.READY:
            return self._error(ErrorCode.ALREADY_GREETED, "device_hello was already received")
        self.state = State.READY
        self.device_id = frame.device_id
        self.agent_ids = list(frame.agent_ids)
        return Received(frame=frame)

    def _chat_request(self, frame: ChatRequest) -> Received:
        request_id = frame.request_id or uuid.uuid4().hex
        if request_id in self.inflight:
            return self._error(
                ErrorCode.DUPLICATE_REQUEST_ID,
                "a request with this id is already running",
                request_id=request_id,
            )
        if len(self.inflight) >= self.limits.max_inflight_requests:
            return self._error(
                ErrorCode.TOO_MANY_REQUESTS,
                f"at most {self.limits.max_inflight_requests} requests may run at once "
                "on one connection",
                request_id=request_id,
            )
        self.inflight.add(request_id)
        return Received(frame=frame.model_copy(update={"request_id": request_id}))

    def request_finished(self, request_id: str) -> None:
        self.inflight.discard(request_id)

    @staticmethod
    def _error(
        code: ErrorCode,
        message: str,
        *,
        request_id: str | None = None,
        retry_after: float | None = None,
    ) -> Received:
        return Received(
            replies=[
                Error(code=code, message=message, request_id=request_id, retry_after=retry_after)
            ]
        )

    # -- time ----------------------------------------------------------------

    def heartbeat(self) -> Heartbeat:
        """What the connection owes the clock now: nothing, a ping, or closing."""
        now = self._clock()
        if now - self._last_seen >= self.limits.idle_timeout_s:
            return Heartbeat.CLOSE
        if now - self._last_ping >= self.limits.ping_interval_s:
            self._last_ping = now
            return Heartbeat.SEND_PING
        return Heartbeat.NOTHING

    def seconds_to_next_heartbeat(self) -> float:
        now = self._clock()
        return max(
            0.0,
            min(
                self._last_ping + self.limits.ping_interval_s - now,
                self._last_seen + self.limits.idle_timeout_s - now,
            ),
        )
