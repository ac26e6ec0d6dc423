"""The SQLAlchemy engine, sessions and the declarative base every model uses.

Also the one rule for "the database is unavailable" (down, restarting,
unreachable, or every pooled connection busy): HTTP answers it with 503 and
the device socket with `service_unavailable`, both through
`is_database_unavailable`.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from datetime import datetime
from types import TracebackType

import psycopg
import psycopg_pool
from sqlalchemy import DateTime, MetaData, func
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# Stable constraint names, so Alembic migrations can name what they drop.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

DATABASE_UNAVAILABLE = "The database is unavailable; try again shortly"
# What `Retry-After` says while the database is away: about one restart of the
# embedded server, and a few pool time-outs' worth of a busy one.
DATABASE_RETRY_AFTER_S = 5

# SQLSTATEs that mean "not now" rather than "wrong": connection exceptions
# (class 08), insufficient resources (class 53: too many connections, disk
# full), and the server shutting down, crashed or still starting (57P01-57P03).
_UNAVAILABLE_SQLSTATE_CLASSES = ("08", "53")
_UNAVAILABLE_SQLSTATES = frozenset({"57P01", "57P02", "57P03"})
# character_not_in_repertoire (a NUL in a text parameter) and untranslatable_character
# (a \u0000 escape in JSON text).
_UNSTORABLE_TEXT_SQLSTATES = frozenset({"22021", "22P05"})
_PSYCOPG_NUL_REFUSAL = "cannot contain NUL (0x00) bytes"
_DRIVER_MODULES = frozenset({"asyncpg", "psycopg", "psycopg_pool", "sqlalchemy"})
_EVENT_LOOPS = frozenset({"uvloop"})  # uvicorn runs on uvloop when it is installed


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class TimestampMixin:
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), nullable=False
    )


def create_engine(
    database_url: str,
    *,
    pool_size: int = 10,
    max_overflow: int = 20,
    pool_timeout_s: float = 5.0,
    connect_timeout_s: float = 5.0,
) -> AsyncEngine:
    """The app's engine. Waits are short on purpose: a request that cannot get a
    connection within `pool_timeout_s` answers 503 instead of queueing for long."""
    return create_async_engine(
        database_url,
        # The embedded or remote server may have restarted under us.
        pool_pre_ping=True,
        # A failed statement's message would otherwise quote its parameters, which are
        # what users wrote, into the log.
        hide_parameters=True,
        pool_size=pool_size,
        max_overflow=max_overflow,
        pool_timeout=pool_timeout_s,
        # asyncpg waits 60 s by default for a host that does not answer.
        connect_args={"timeout": connect_timeout_s},
    )


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


def _raised_by_a_driver(traceback: TracebackType | None) -> bool:
    """Whether the innermost frame outside the event loop and the standard library
    is a database driver's (so an OSError from our own file I/O inside a
    transaction does not count, though it unwinds through SQLAlchemy)."""
    owner = None
    while traceback is not None:
        module = str(traceback.tb_frame.f_globals.get("__name__", "")).split(".", 1)[0]
        if module not in sys.stdlib_module_names and module not in _EVENT_LOOPS:
            owner = module
        traceback = traceback.tb_next
    return owner in _DRIVER_MODULES


def _means_unavailable(exc: BaseException) -> bool:
    if isinstance(exc, sa_exc.TimeoutError | sa_exc.DisconnectionError):
        return True  # the pool had no connection to give, or lost it
    if isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated:
        return True  # SQLAlchemy's dialect recognised a disconnect
    if isinstance(exc, psycopg_pool.PoolTimeout | psycopg_pool.TooManyRequests):
        return True
    sqlstate = getattr(exc, "sqlstate", None)
    if isinstance(sqlstate, str):
        return sqlstate.startswith(_UNAVAILABLE_SQLSTATE_CLASSES) or (
            sqlstate in _UNAVAILABLE_SQLSTATES
        )
    if isinstance(exc, psycopg.OperationalError):
        # No SQLSTATE: libpq failed on the client side (cannot connect, connection lost).
        return True
    # asyncpg lets connect errors through unwrapped (refused, no socket file,
    # time-out); an OSError from elsewhere (a full disk) is not the database's.
    return isinstance(exc, OSError) and _raised_by_a_driver(exc.__traceback__)


def _caused_by(exc: BaseException, test: Callable[[BaseException], bool]) -> bool:
    """Whether `exc`, what caused it, or an exception grouped in it passes `test`."""
    pending: list[BaseException] = [exc]
    seen: set[int] = set()
    while pending:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        if test(current):
            return True
        if isinstance(current, BaseExceptionGroup):
            pending.extend(current.exceptions)
        pending.extend(e for e in (current.__cause__, current.__context__) if e is not None)
    return False


def is_database_unavailable(exc: BaseException) -> bool:
    """Whether `exc` (or what caused it) means the database cannot be reached right now.

    True for a server that is down, restarting or unreachable, a connection
    lost mid-query, and a pool with no connection to spare within its time-out
    (SQLAlchemy/asyncpg and the checkpointer's psycopg alike). False for
    errors a retry would not fix (constraint violations, bad SQL).
    """
    return _caused_by(exc, _means_unavailable)


def is_unstorable_text(exc: BaseException) -> bool:
    """Whether `exc` (or what caused it) is PostgreSQL refusing a text it cannot hold.

    That is the NUL character (U+0000): JSON and URLs can carry it, no text
    column can. Whatever a request sends reaches the database only as a
    parameter, so this is always the request's text, never the server's.
    """
    return _caused_by(exc, _refuses_text)


def _refuses_text(error: BaseException) -> bool:
    if getattr(error, "sqlstate", None) in _UNSTORABLE_TEXT_SQLSTATES:
        return True
    # psycopg (the checkpointer's driver) refuses a NUL itself, before PostgreSQL
    # sees it: a DataError with no SQLSTATE, known by its message.
    return (
        isinstance(error, psycopg.DataError)
        and error.sqlstate is None
        and _PSYCOPG_NUL_REFUSAL in str(error)
    )
