"""The server's Prometheus metrics, served by `GET /metrics` (`app.observability.router`).

Every label is bounded: route templates (never raw paths), frame types and
error codes from the protocol's enums, tool actions, turn kinds, roles (the
supervisor, the sub-agent names, `embedding`, `extraction`, `journey`) and the
model strings the operator configured. No user id, e-mail address or text a
user wrote ever becomes a label.

The batch families (`adiuva_batch_*`) are fed by the batch scheduler
(`app.batch.scheduled`): runs by final status, and the lateness of each slot a
scheduler pass claims.
"""

from __future__ import annotations

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
)

from protocol.frames import Error, ErrorCode, ServerFrame, TurnUsage

# The `_created` series double the exposition and no dashboard of ours reads them.
disable_created_metrics()  # type: ignore[no-untyped-call]  # untyped in prometheus-client
REGISTRY = CollectorRegistry()
ProcessCollector(registry=REGISTRY)
PlatformCollector(registry=REGISTRY)

# Routes no template matched (404s, scanners) share one label value.
UNMATCHED_ROUTE = "unmatched"

_TURN_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 30.0, 60.0, 120.0)
_FAST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

HTTP_REQUESTS = Counter(
    "adiuva_http_requests",
    "HTTP requests answered, by route template, method and status.",
    ["route", "method", "status"],
    registry=REGISTRY,
)
HTTP_DURATION = Histogram(
    "adiuva_http_request_duration_seconds",
    "Time to answer an HTTP request, by route template and method.",
    ["route", "method"],
    buckets=_FAST_BUCKETS,
    registry=REGISTRY,
)
DEVICE_CONNECTIONS = Gauge(
    "adiuva_device_connections",
    "Device WebSocket connections open now.",
    registry=REGISTRY,
)
FRAMES_RECEIVED = Counter(
    "adiuva_frames_received",
    "Frames received from devices, by type (`invalid` for frames that could not be read).",
    ["type"],
    registry=REGISTRY,
)
FRAMES_SENT = Counter(
    "adiuva_frames_sent",
    "Frames sent to devices, by type.",
    ["type"],
    registry=REGISTRY,
)
ERROR_FRAMES = Counter(
    "adiuva_error_frames",
    "`error` frames sent to devices, by code.",
    ["code"],
    registry=REGISTRY,
)
RATE_LIMITED = Counter(
    "adiuva_rate_limited",
    "Requests and frames refused for going over a rate limit (HTTP 429, `rate_limited` frames).",
    ["transport"],
    registry=REGISTRY,
)
TOOL_CALLS = Counter(
    "adiuva_tool_calls",
    "Client-executed tool calls, by action and outcome (ok, or the error's kind).",
    ["action", "outcome"],
    registry=REGISTRY,
)
TOOL_CALL_DURATION = Histogram(
    "adiuva_tool_call_duration_seconds",
    "Time from sending a `tool_call` to its result, by action.",
    ["action"],
    buckets=_FAST_BUCKETS,
    registry=REGISTRY,
)
TURNS = Counter(
    "adiuva_turns",
    "Chat turns answered, by kind (home, floating, rest).",
    ["kind"],
    registry=REGISTRY,
)
TURN_DURATION = Histogram(
    "adiuva_turn_duration_seconds",
    "Time from a chat request to its end (`stream_end`, or the REST answer), by kind.",
    ["kind"],
    buckets=_TURN_BUCKETS,
    registry=REGISTRY,
)
TURN_FIRST_TOKEN = Histogram(
    "adiuva_turn_first_token_seconds",
    "Time from a chat request to the first text of its answer, by kind.",
    ["kind"],
    buckets=_TURN_BUCKETS,
    registry=REGISTRY,
)
MODEL_CALLS = Counter(
    "adiuva_model_calls",
    "Model calls (chat and embeddings), by role, model and outcome (ok, error).",
    ["role", "model", "outcome"],
    registry=REGISTRY,
)
MODEL_TOKENS = Counter(
    "adiuva_model_tokens",
    "Tokens the providers reported, by role, model and kind (prompt, completion).",
    ["role", "model", "kind"],
    registry=REGISTRY,
)
MODEL_COST = Counter(
    "adiuva_model_cost_usd",
    "What model calls cost in US dollars (LiteLLM's cost map or LLM_PRICES), by role and model.",
    ["role", "model"],
    registry=REGISTRY,
)
MODEL_CALL_DURATION = Histogram(
    "adiuva_model_call_duration_seconds",
    "Time a model call took, by role and model.",
    ["role", "model"],
    buckets=_TURN_BUCKETS,
    registry=REGISTRY,
)
USAGE_ROWS_DROPPED = Counter(
    "adiuva_usage_rows_dropped",
    "Usage rows that could not be stored (the write failed, or the queue was full).",
    registry=REGISTRY,
)
BATCH_RUNS = Counter(
    "adiuva_batch_runs",
    "Batch agent runs finished, by status.",
    ["status"],
    registry=REGISTRY,
)
BATCH_SCHEDULER_LAG = Histogram(
    "adiuva_batch_scheduler_lag_seconds",
    "How late the scheduler started a batch run after it was due.",
    buckets=(1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 900.0, 3600.0),
    registry=REGISTRY,
)


def count_sent_frame(frame: ServerFrame) -> None:
    """Count a frame sent to a device; an `error` frame also by its code."""
    FRAMES_SENT.labels(frame.type).inc()
    if isinstance(frame, Error):
        ERROR_FRAMES.labels(frame.code.value).inc()
        if frame.code is ErrorCode.RATE_LIMITED:
            RATE_LIMITED.labels("device").inc()


def observe_turn(kind: str, usage: TurnUsage) -> None:
    """Count one finished chat turn (`home`, `floating`, `rest`) and its timing."""
    TURNS.labels(kind).inc()
    TURN_DURATION.labels(kind).observe(usage.duration_ms / 1000)
    if usage.first_token_ms is not None:
        TURN_FIRST_TOKEN.labels(kind).observe(usage.first_token_ms / 1000)
