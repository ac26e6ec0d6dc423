"""Request body limits: a body over its route's limit is refused with 413, never buffered.

`ROUTE_BODY_LIMITS` is the one table of limits (and `PUT /backup`, whose
limit is the BACKUP_MAX_BYTES setting); routes not in it get
HTTP_MAX_BODY_BYTES. A `Content-Length` over the limit is refused before a
byte of the body is read. A chunked body (or one longer than it said) is
counted as it arrives and refused as soon as it passes the limit; the app is
then told the client left, so it stops reading, and the connection is closed
rather than drained.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.core.errors import PayloadTooLargeError, error_response
from app.core.settings import Settings

KIB = 1024
MIB = 1024 * KIB

# Bytes a route may receive, by path under the API prefix. Sized for the
# largest valid request written with every character JSON-escaped (`\uXXXX`,
# six bytes): auth bodies are an email and a password of at most 1,024
# characters; `/chat` a message of at most 32,000 characters plus a context of
# at most 16 KiB; `/storage/vectors/embed` a text of at most 16,000 characters; a
# local agent at most 25,300 characters (20 paths of 1,024, a prompt template of
# 4,000, names and ids); a cloud agent at most 13,500 (two filter lists of 20
# entries of 200, a prompt template of 4,000, a name, an encrypted_token of 1,000);
# a setup-journey answer at most 2,000 characters. A `{id}` segment stands for any
# one path segment.
AUTH_BODY_BYTES = 16 * KIB
AGENT_BODY_BYTES = 160 * KIB
# Stripe events are small JSON documents; an invoice with many lines is the largest.
STRIPE_WEBHOOK_BODY_BYTES = 512 * KIB
# Cloud storage (app.storage.schemas): a record's blob of at most 1 MiB as base64, with
# room for every `/` escaped (`\/`); an upsert of many items with their vectors (send
# fewer per request past it); a search's query vector or blob; a delete's ids.
RECORD_BODY_BYTES = 3 * MIB
VECTORS_UPSERT_BODY_BYTES = 16 * MIB
# A plugin submission (app.plugins.checklist): a package of at most 10 MiB and a manifest
# of at most 16 KiB, with room for the multipart framing; past it, 413 before reading.
PLUGIN_SUBMISSION_BODY_BYTES = 10 * MIB + 64 * KIB
ROUTE_BODY_LIMITS: Mapping[str, int] = {
    "/auth/register": AUTH_BODY_BYTES,
    "/auth/login": AUTH_BODY_BYTES,
    "/auth/refresh": AUTH_BODY_BYTES,
    "/auth/logout": AUTH_BODY_BYTES,
    "/chat": 256 * KIB,
    "/storage/vectors/embed": 128 * KIB,
    "/agents/local": AGENT_BODY_BYTES,
    "/agents/local/{id}": AGENT_BODY_BYTES,
    "/agents/cloud": AGENT_BODY_BYTES,
    "/agents/cloud/{id}": AGENT_BODY_BYTES,
    "/agents/journey/start": AUTH_BODY_BYTES,
    "/agents/journey/message": AUTH_BODY_BYTES,
    "/billing/checkout": 4 * KIB,  # a tier and a seat count
    "/billing/portal": 1 * KIB,  # no body is read
    "/billing/webhook": STRIPE_WEBHOOK_BODY_BYTES,
    "/storage/records": RECORD_BODY_BYTES,
    "/storage/records/{id}": RECORD_BODY_BYTES,
    "/storage/vectors/upsert": VECTORS_UPSERT_BODY_BYTES,
    "/storage/vectors/search": MIB,
    "/storage/vectors": 256 * KIB,
    "/plugins": PLUGIN_SUBMISSION_BODY_BYTES,
    "/plugins/{id}/review": 32 * KIB,  # a decision and notes of at most 4,000 characters
    "/plugins/{id}/rating": 16 * KIB,  # stars and a comment of at most 2,000 characters
    "/plugins/{id}/install": 1 * KIB,  # no body is read
    "/plugins/payouts/onboarding": 1 * KIB,  # no body is read
}
# A path segment that stands for any one segment (an id) in `ROUTE_BODY_LIMITS`.
ANY_ID = "{id}"


@dataclass(frozen=True, slots=True)
class BodyLimits:
    """How many bytes of body each request path may carry."""

    default: int
    by_path: Mapping[str, int]

    @classmethod
    def for_api(cls, settings: Settings, *, prefix: str) -> BodyLimits:
        """`ROUTE_BODY_LIMITS` and backups mounted under `prefix`, HTTP_MAX_BODY_BYTES for
        the rest."""
        routes = {prefix + path: limit for path, limit in ROUTE_BODY_LIMITS.items()}
        routes[prefix + "/backup"] = settings.backup_max_bytes
        return cls(default=settings.http_max_body_bytes, by_path=routes)

    def for_path(self, path: str) -> int:
        # `/chat/` is redirected to `/chat`; it must not get a smaller limit on the way.
        path = path.rstrip("/") or "/"
        exact = self.by_path.get(path)
        if exact is not None:
            return exact
        segments = path.split("/")
        for pattern, limit in self.by_path.items():
            parts = pattern.split("/")
            if (
                ANY_ID in parts
                and len(parts) == len(segments)
                and all(p in (ANY_ID, s) for p, s in zip(parts, segments, strict=True))
            ):
                return limit
        return self.default


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None  # the server refuses malformed lengths; counting still applies
    return None


def _too_large(limit: int) -> PayloadTooLargeError:
    # `Connection: close` tells the server not to drain the rest of the body to keep the
    # connection alive (RFC 9110 §15.5.14 lets it close instead).
    return PayloadTooLargeError(
        f"Request body is limited to {limit} bytes on this route",
        headers={"Connection": "close"},
    )


class BodyLimitMiddleware:
    """Refuse HTTP request bodies over their route's limit with 413; websockets pass through."""

    def __init__(self, app: ASGIApp, *, limits: BodyLimits) -> None:
        self.app = app
        self.limits = limits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limits.for_path(scope["path"])
        declared = _content_length(scope)
        if declared is not None and declared > limit:
            await error_response(_too_large(limit))(scope, receive, send)
            return
        await _LimitedRequest(self.app, limit=limit).run(scope, receive, send)


class _LimitedRequest:
    """One request whose body is counted as the app reads it."""

    def __init__(self, app: ASGIApp, *, limit: int) -> None:
        self.app = app
        self.limit = limit
        self.received = 0
        self.refused = False
        self.answered = False
        self.response_started = False

    async def run(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def receive_within_limit() -> Message:
            if self.refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] != "http.request":
                return message
            self.received += len(message.get("body", b""))
            if self.received <= self.limit:
                return message
            self.refused = True
            if not self.response_started:
                await error_response(_too_large(self.limit))(scope, receive, send)
                self.answered = True
            # The app sees a client that left: it stops reading, and once the 413 is
            # out whatever it answers to that is dropped.
            return {"type": "http.disconnect"}

        async def send_unless_answered(message: Message) -> None:
            if message["type"] == "http.response.start":
                self.response_started = True
            if not self.answered:
                await send(message)

        await self.app(scope, receive_within_limit, send_unless_answered)
