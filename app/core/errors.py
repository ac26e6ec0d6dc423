"""One error shape for every failure: `{"detail": ...}` with the right status.

Domain code raises `AppError` subclasses; this module is the one place that
turns them (and framework errors) into HTTP answers. Unexpected failures are
caught by the request middleware (`app.core.logging`), which logs them and
answers with `unexpected_error_response`: no stack trace reaches a client. The
one exception is the database being unavailable (down, restarting, or every
connection busy): that is 503 with `Retry-After`, never 500, whichever driver
noticed it (`app.core.database.is_database_unavailable` decides).
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar

import asyncpg
import psycopg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import SQLAlchemyError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import HTTPConnection

from app.core.database import (
    DATABASE_RETRY_AFTER_S,
    DATABASE_UNAVAILABLE,
    is_database_unavailable,
    is_unstorable_text,
)
from protocol.frames import Error, ErrorCode

logger = logging.getLogger(__name__)

# Where a database outage surfaces: SQLAlchemy (pool time-out, wrapped driver
# errors), asyncpg and psycopg directly, and OSError from a refused connect.
_DATABASE_ERRORS: tuple[type[Exception], ...] = (
    SQLAlchemyError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    psycopg.Error,
    OSError,
)


class AppError(Exception):
    """A failure the client caused or must know about: its HTTP status, and the
    `error` frame code it gets when it ends a request on the device socket."""

    status_code: ClassVar[int] = 400
    frame_code: ClassVar[ErrorCode] = ErrorCode.INTERNAL_ERROR
    detail: str = "Bad request"

    def __init__(self, detail: str | None = None, *, headers: dict[str, str] | None = None):
        super().__init__(detail or self.detail)
        if detail is not None:
            self.detail = detail
        self.headers = headers


class ForbiddenError(AppError):
    status_code = 403
    detail = "Forbidden"


class NotFoundError(AppError):
    status_code = 404
    detail = "Not found"


class ConflictError(AppError):
    status_code = 409
    detail = "Conflict"


class UnauthorizedError(AppError):
    """401 with the `WWW-Authenticate` challenge RFC 6750 asks for."""

    status_code = 401
    detail = "Not authenticated"

    def __init__(self, detail: str | None = None, *, invalid_token: bool = False) -> None:
        challenge = 'Bearer error="invalid_token"' if invalid_token else "Bearer"
        super().__init__(detail, headers={"WWW-Authenticate": challenge})


class PayloadTooLargeError(AppError):
    status_code = 413
    detail = "Request body too large"


class _RetryLaterError(AppError):
    """A refusal the client should retry: `Retry-After` says when (whole seconds)."""

    def __init__(self, detail: str | None = None, *, retry_after: float | None = None) -> None:
        headers = None if retry_after is None else {"Retry-After": str(max(1, round(retry_after)))}
        super().__init__(detail, headers=headers)
        self.retry_after = retry_after


class TooManyRequestsError(_RetryLaterError):
    status_code = 429
    frame_code = ErrorCode.RATE_LIMITED
    detail = "Too many requests"


class ServiceUnavailableError(_RetryLaterError):
    status_code = 503
    frame_code = ErrorCode.SERVICE_UNAVAILABLE
    detail = "Service unavailable"


class UnstorableTextError(AppError):
    """A request's text holds the NUL character, which PostgreSQL cannot store; found
    where the database refuses it, so every route and frame is covered."""

    status_code = 422
    frame_code = ErrorCode.INVALID_FRAME
    detail = "Text may not contain the NUL character (U+0000)"


class BadGatewayError(AppError):
    """A service the server depends on (the payment provider) answered with a failure."""

    status_code = 502
    detail = "An upstream service failed"


class ModelNotConfiguredError(ServiceUnavailableError):
    """No language model is configured; the detail names the variable to set."""

    frame_code = ErrorCode.LLM_NOT_CONFIGURED


class ModelFailedError(ServiceUnavailableError):
    """The language model failed after its retries, or its answer was cut short."""

    frame_code = ErrorCode.LLM_ERROR
    detail = "The language model did not answer; please try again."


def _validation_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    # Drop the rejected input: it may be a password, and the client already has it.
    return [
        {"loc": list(error.get("loc", ())), "msg": error.get("msg", ""), "type": error.get("type")}
        for error in exc.errors()
    ]


def error_response(exc: AppError) -> JSONResponse:
    """The HTTP answer for `exc`; also used by ASGI middleware outside FastAPI's handlers."""
    return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)


async def _app_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, AppError)
    return error_response(exc)


async def _http_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    return JSONResponse(
        {"detail": exc.detail}, status_code=exc.status_code, headers=getattr(exc, "headers", None)
    )


async def _validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return JSONResponse({"detail": _validation_errors(exc)}, status_code=422)


def database_unavailable_error() -> ServiceUnavailableError:
    return ServiceUnavailableError(DATABASE_UNAVAILABLE, retry_after=DATABASE_RETRY_AFTER_S)


async def _database_error(conn: HTTPConnection, exc: Exception) -> JSONResponse:
    # The device socket answers outages itself (close 1013); anything else that
    # is neither an outage nor a client's unstorable text stays a bug, for the
    # request middleware to log as one.
    if conn.scope["type"] == "http" and is_database_unavailable(exc):
        logger.warning(
            "database unavailable", extra={"path": conn.url.path, "error": type(exc).__name__}
        )
        return error_response(database_unavailable_error())
    if conn.scope["type"] == "http" and is_unstorable_text(exc):
        logger.warning("request text the database cannot store", extra={"path": conn.url.path})
        return error_response(UnstorableTextError())
    raise exc


def error_frame(exc: BaseException, request_id: str | None = None) -> Error:
    """The `error` frame for a device request (or connection) that failed with `exc`.

    The socket's twin of the HTTP handlers above: the same exceptions, the same
    words. Anything unanticipated is `internal_error`, its details in the log.
    """
    if is_database_unavailable(exc):
        exc = database_unavailable_error()
    elif is_unstorable_text(exc):
        exc = UnstorableTextError()
    if isinstance(exc, AppError):
        logger.warning("request failed", extra={"request_id": request_id, "code": exc.frame_code})
        return Error(
            code=exc.frame_code,
            message=exc.detail,
            request_id=request_id,
            retry_after=getattr(exc, "retry_after", None),
        )
    logger.error("request failed unexpectedly", extra={"request_id": request_id}, exc_info=exc)
    return Error(
        code=ErrorCode.INTERNAL_ERROR,
        message="The request failed unexpectedly.",
        request_id=request_id,
    )


def unexpected_error_response(exc: Exception) -> JSONResponse:
    """The answer to a failure no handler took; the details go to the log only.

    A database outage can reach here wrapped in another exception (a library's
    own error type, an exception group): it is still a 503, not a bug.
    """
    if is_database_unavailable(exc):
        return error_response(database_unavailable_error())
    if is_unstorable_text(exc):
        return error_response(UnstorableTextError())
    return JSONResponse({"detail": "Internal server error"}, status_code=500)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(AppError, _app_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    for error_type in _DATABASE_ERRORS:
        app.add_exception_handler(error_type, _database_error)
