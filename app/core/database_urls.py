"""PostgreSQL URLs as each of our drivers spells them.

`DATABASE_URL` may be written `postgres://…`, `postgresql://…` or
`postgresql+asyncpg://…`. SQLAlchemy (the app's engine and Alembic) runs it on
asyncpg; psycopg (the LangGraph checkpointer) and `asyncpg.connect` take the
plain libpq URI. Credentials and query parameters are kept as they are.
"""

from __future__ import annotations

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

SQLALCHEMY_DRIVER = "postgresql+asyncpg"
LIBPQ_SCHEME = "postgresql"
ACCEPTED_SCHEMES = frozenset({"postgres", "postgresql", SQLALCHEMY_DRIVER})


def _parse(url: str) -> URL:
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        # The message never repeats the URL: it may hold a password.
        msg = "not a URL SQLAlchemy can read"
        raise ValueError(msg) from None
    if parsed.drivername not in ACCEPTED_SCHEMES:
        msg = f"not a PostgreSQL URL (scheme {parsed.drivername!r})"
        raise ValueError(msg)
    return parsed


def _render(url: URL) -> str:
    return url.render_as_string(hide_password=False)


def sqlalchemy_url(url: str) -> str:
    """Any accepted spelling as SQLAlchemy's asyncpg URL; ValueError if it is not PostgreSQL."""
    return _render(_parse(url).set(drivername=SQLALCHEMY_DRIVER))


def libpq_url(url: str) -> str:
    """Any accepted spelling as a libpq URI: what psycopg and `asyncpg.connect` take."""
    return _render(_parse(url).set(drivername=LIBPQ_SCHEME))


def with_database(url: str, database: str) -> str:
    """The same server, user and options, pointing at another database."""
    return _render(_parse(url).set(database=database))
