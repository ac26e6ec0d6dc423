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
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import Enum, IntEnum, auto

from pydantic import TypeAdapter, ValidationError

from app.core.json_depth import nests_deeper_than
from app.core.json_text import holds_lone_surrogate, may_hold_lone_surrogate
from app.device.pending import Answer, PendingCalls
from protocol.errors import FrameTooLargeError, ToolCallTooLargeError
from protocol.frames import (
    AgentComplete,
    AgentData,
    Cancel,
    ClientFrame,
    DeviceHello,
    Error,
    ErrorCode,
    FloatingRequest,
    HomeRequest,
    Id,
    Mutation,
    Ping,
    Pong,
    ServerFrame,
    StreamEnd,
    StreamText,
    ToolCall,
    ToolResult,
    TurnUsage,
    client_frame_adapter,
)

logger = logging.getLogger(__name__)

ChatRequest = HomeRequest | FloatingRequest
RATE_WINDOW_S = 60.0
# Deeper JSON than any real frame needs; far below where `json.loads` and
# pydantic would hit Python's recursion limit.
MAX_JSON_DEPTH = 64
_TOO_DEEP = f"frame nests objects and arrays more than {MAX_JSON_DEPTH} levels deep"
_NOT_UNICODE = "frame holds text that is not valid Unicode (a lone UTF-16 surrogate)"
# An unknown frame type is named back in the error only up to this length.
MAX_ECHOED_TYPE_CHARS = 64
_ID: TypeAdapter[str] = TypeAdapter(Id)
# Heartbeats and answers to our own calls are never rate limited: refusing them
# would break the connection or the server's own requests.
_UNLIMITED_FRAMES = (Ping, Pong)
# The `usage` of a request refused before it ran: no model call, no time spent.
NOTHING_USED = TurnUsage(
    model_calls=0, prompt_tokens=0, completion_tokens=0, cost_usd=0.0, duration_ms=0
)


class CloseCode(IntEnum):
    """WebSocket close codes this server uses (docs/protocol.md)."""

    NORMAL = 1000
    GOING_AWAY = 1001  # heartbeat timeout, server shutting down
    POLICY_VIOLATION = 1008  # bad or expired token, login revoked
    MESSAGE_TOO_BIG = 1009  # a frame far over the size limit (sent by the WebSocket library)
    TRY_AGAIN_LATER = 1013  # connection limits, database unavailable
    REPLACED = 4000  # the same device connected again
    TOO_MANY_INVALID_FRAMES = 4001  # the client kept sending frames it was told were wrong


@dataclass(frozen=True, slots=True)
class ProtocolLimits:
    max_frame_bytes: int = 1024 * 1024
    messages_per_minute: int = 100
    invalid_frames_per_minute: int = 20
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


@dataclass(frozen=True, slots=True)
class CloseRequest:
    code: CloseCode
    reason: str


@dataclass(slots=True)
class Received:
    """The outcome of one incoming frame."""

    replies: list[ServerFrame] = field(default_factory=list)
    frame: ClientFrame | None = None  # a frame for the application to act on
    # The received frame's `type` once it validated; "invalid" for one that did not.
    frame_type: str = "invalid"
    result: ToolResult | None = None  # the answer to a call that is waiting for it
    close: CloseRequest | None = None  # set when the connection must end after the replies


class Noise(Enum):
    """Frames that do the server no good, counted per connection."""

    INVALID = "invalid frame"  # not JSON, not a frame, too large, binary, too deep
    RATE_LIMITED = "frame over the rate limit"
    UNKNOWN_TOOL_RESULT = "tool_result for a call not issued here (or already answered)"


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
    """The request id of a frame that failed validation, if it is one an `error` frame
    can carry (a valid `Id`)."""
    candidate = raw.get("request_id") if isinstance(raw, dict) else None
    try:
        return _ID.validate_python(candidate) if isinstance(candidate, str) else None
    except ValidationError:
        return None


def _unknown_type_message(kind: object) -> str:
    # Named back only when short: the reply must never outgrow what was sent.
    if not kind:
        return "frame has no 'type' field"
    if isinstance(kind, str) and len(kind) <= MAX_ECHOED_TYPE_CHARS:
        return f"unknown frame type {kind!r}"
    return "unknown frame type"


def _fits(text: str, limit: int) -> bool:
    # A str has at most 4 bytes per character: only encode when it could be too big.
    return len(text) * 4 <= limit or len(text.encode()) <= limit


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
        self.noise: Counter[Noise] = Counter()
        self._clock = clock
        self._limiter = SlidingWindowLimiter(limits.messages_per_minute, RATE_WINDOW_S, clock)
        self._noise_limiter = SlidingWindowLimiter(
            limits.invalid_frames_per_minute, RATE_WINDOW_S, clock
        )
        self._last_seen = clock()
        self._last_ping = clock()

    # -- incoming ------------------------------------------------------------

    def receive_text(self, text: str) -> Received:
        self._last_seen = self._clock()
        if not _fits(text, self.limits.max_frame_bytes):
            return self._invalid(
                ErrorCode.FRAME_TOO_LARGE,
                f"frames are limited to {self.limits.max_frame_bytes} bytes",
            )
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as exc:
            return self._invalid(ErrorCode.INVALID_JSON, f"frame is not valid JSON: {exc.msg}")
        except ValueError:  # an integer past Python's 4,300-digit limit for reading one
            return self._invalid(ErrorCode.INVALID_JSON, "frame holds a number too long to read")
        except RecursionError:
            return self._invalid(ErrorCode.INVALID_JSON, _TOO_DEEP)
        # Nesting needs at least as many brackets as levels: counting them is
        # cheap, so only frames that could be too deep are walked.
        if text.count("[") + text.count("{") > MAX_JSON_DEPTH and nests_deeper_than(
            raw, MAX_JSON_DEPTH
        ):
            return self._invalid(ErrorCode.INVALID_JSON, _TOO_DEEP)
        if may_hold_lone_surrogate(text) and holds_lone_surrogate(raw):
            return self._invalid(ErrorCode.INVALID_FRAME, _NOT_UNICODE)
        return self._receive_json(raw)

    def receive_bytes(self) -> Received:
        self._last_seen = self._clock()
        return self._invalid(ErrorCode.INVALID_FRAME, "frames are JSON text messages, not binary")

    def _receive_json(self, raw: object) -> Received:
        if not isinstance(raw, dict):
            return self._invalid(ErrorCode.INVALID_FRAME, "a frame is a JSON object with a 'type'")
        try:
            frame = client_frame_adapter.validate_python(raw)
        except ValidationError as exc:
            request_id = _request_id_of(raw)
            if any(e["type"] in {"union_tag_invalid", "union_tag_not_found"} for e in exc.errors()):
                message = _unknown_type_message(raw.get("type"))
                return self._invalid(ErrorCode.UNKNOWN_TYPE, message, request_id=request_id)
            return self._invalid(
                ErrorCode.INVALID_FRAME, _validation_message(exc), request_id=request_id
            )
        received = self._receive_frame(frame, raw)
        received.frame_type = frame.type
        return received

    def _receive_frame(self, frame: ClientFrame, raw: dict[str, object]) -> Received:
        if isinstance(frame, _UNLIMITED_FRAMES):
            return self._dispatch(frame)
        answer = None
        if isinstance(frame, ToolResult) and self.state is State.READY:
            answer = self.pending.take(frame)
            if answer is Answer.TAKEN:
                return Received(result=frame)  # answers to our own calls are free
        retry_after = self._limiter.acquire()
        if retry_after is not None:
            request_id = _request_id_of(raw)
            refused = self._error(
                ErrorCode.RATE_LIMITED,
                f"more than {self.limits.messages_per_minute} frames per minute",
                request_id=request_id,
                retry_after=retry_after,
            )
            if isinstance(frame, ChatRequest) and request_id and request_id not in self.inflight:
                # Like a request over the user's limit: `rate_limited` ends it with stream_end.
                refused.replies.append(
                    StreamEnd(request_id=request_id, mutations=[], usage=NOTHING_USED)
                )
            return self._count_noise(Noise.RATE_LIMITED, refused)
        if answer is Answer.LATE:
            return Received()  # the call timed out or its request ended: ignored
        if answer is Answer.UNKNOWN:
            return self._count_noise(Noise.UNKNOWN_TOOL_RESULT, Received())
        return self._dispatch(frame)

    def _invalid(self, code: ErrorCode, message: str, *, request_id: str | None = None) -> Received:
        """Refuse a frame that could not be read; it costs the sender like any other."""
        self._limiter.acquire()
        return self._count_noise(Noise.INVALID, self._error(code, message, request_id=request_id))

    def _count_noise(self, kind: Noise, received: Received) -> Received:
        """Count a useless frame; a connection that keeps sending them is closed.

        The first of each kind is logged, the rest only counted (the adapter
        logs the totals when the connection ends), so noise cannot flood the log.
        """
        self.noise[kind] += 1
        if self.noise[kind] == 1:
            logger.warning(
                "useless frame from a device (%s); further ones are only counted", kind.value
            )
        if self._noise_limiter.acquire() is not None:
            received.close = CloseRequest(
                CloseCode.TOO_MANY_INVALID_FRAMES,
                f"more than {self.limits.invalid_frames_per_minute} invalid frames per minute",
            )
        return received

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
                    ErrorCode.UNKNOWN_RUN,
                    f"no batch run {frame.run_id!r} is reading files on this connection",
                )
            if isinstance(frame, AgentComplete):
                # The desktop is done with the run: anything it sends for it later is refused.
                self.runs.discard(frame.run_id)
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

    def run_started(self, run_id: str) -> None:
        """Accept `agent_data` / `agent_complete` for `run_id` (an `agent_run` was sent)."""
        self.runs.add(run_id)

    def run_finished(self, run_id: str) -> None:
        """Refuse further frames for `run_id` (it ended on the server's side)."""
        self.runs.discard(run_id)

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

    # -- outgoing ------------------------------------------------------------

    def encode(self, frame: ServerFrame) -> list[str]:
        """The text messages that carry `frame`, none over the frame limit.

        The limit is the one clients are held to (`WS_MAX_FRAME_BYTES`), so a
        client that accepts what it may send never has a frame refused. Long
        `stream_text` is split into several frames; an oversized `stream_end`
        reports its mutations by id only (the desktop holds the rows).
        """
        text = frame.to_json()
        if _fits(text, self.limits.max_frame_bytes):
            return [text]
        if isinstance(frame, StreamText):
            return self._split_text(frame)
        if isinstance(frame, StreamEnd):
            return [self._slim_stream_end(frame)]
        if isinstance(frame, ToolCall):
            raise ToolCallTooLargeError(self.limits.max_frame_bytes)
        msg = f"a {frame.type} frame is over the {self.limits.max_frame_bytes}-byte limit"
        raise FrameTooLargeError(msg)

    def _split_text(self, frame: StreamText) -> list[str]:
        overhead = len(frame.model_copy(update={"chunk": ""}).to_json().encode())
        # One character is at most 6 bytes in JSON (a \uXXXX escape).
        step = max(1, (self.limits.max_frame_bytes - overhead) // 6)
        chunk = frame.chunk
        return [
            frame.model_copy(update={"chunk": chunk[start : start + step]}).to_json()
            for start in range(0, len(chunk), step)
        ]

    def _slim_stream_end(self, frame: StreamEnd) -> str:
        slim = [
            Mutation(
                action=m.action, table=m.table, data={"id": m.data["id"]} if "id" in m.data else {}
            )
            for m in frame.mutations
        ]
        text = frame.model_copy(update={"mutations": slim}).to_json()
        while slim and not _fits(text, self.limits.max_frame_bytes):
            # Thousands of mutations in one turn: keep the first that fit.
            slim = slim[: len(slim) // 2]
            text = frame.model_copy(update={"mutations": slim}).to_json()
        logger.warning("stream_end over the frame limit: mutations sent by id only")
        return text

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
