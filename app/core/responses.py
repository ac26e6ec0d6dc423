"""The error answers routes share, declared once for the OpenAPI document.

Every answer here has the one error shape, `{"detail": "..."}` (see
`app.core.errors`). Routers take `EVERY_ROUTE` as their `responses=`; a route
adds `JSON_BODY` when it reads a JSON body, `AUTHENTICATED` when it needs an
access token, and `error(...)` for answers of its own. FastAPI declares 422
itself on routes with parameters; a route that also refuses with a 422 of its
own declares `error(422, ..., model=UnprocessableDetail)`.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

Responses = dict[int | str, dict[str, Any]]


class ErrorDetail(BaseModel):
    detail: str


class ValidationIssue(BaseModel):
    loc: list[str | int]
    msg: str
    type: str


class UnprocessableDetail(BaseModel):
    """A 422 of a route that refuses more than its fields' shapes: FastAPI's list of
    validation issues, or one sentence for what the fields alone cannot show."""

    detail: str | list[ValidationIssue]


_RETRY_AFTER = {
    "Retry-After": {
        "description": "Whole seconds to wait before trying again.",
        "schema": {"type": "integer", "minimum": 1},
    }
}

EVERY_ROUTE: Responses = {
    413: {
        "model": ErrorDetail,
        "description": "The request body is over this route's limit (README, Request limits).",
    },
    429: {
        "model": ErrorDetail,
        "description": "Too many requests; try again after `Retry-After`.",
        "headers": _RETRY_AFTER,
    },
    503: {
        "model": ErrorDetail,
        "description": "Temporarily unavailable (for example the database is down); "
        "try again, after `Retry-After` when given.",
        "headers": _RETRY_AFTER,
    },
}

JSON_BODY: Responses = {
    400: {"model": ErrorDetail, "description": "The body could not be read (not UTF-8)."},
}

AUTHENTICATED: Responses = {
    401: {
        "model": ErrorDetail,
        "description": "Missing, invalid or expired access token.",
        "headers": {
            "WWW-Authenticate": {
                "description": "The Bearer challenge (RFC 6750).",
                "schema": {"type": "string"},
            }
        },
    },
}


def error(status: int, description: str, *, model: Any = ErrorDetail) -> Responses:
    """A route's own reason for `status`, keeping the shared headers of that status."""
    shared = {**EVERY_ROUTE, **AUTHENTICATED}.get(status, {})
    return {status: {**shared, "model": model, "description": description}}
