"""One PostgreSQL URL, spelled for SQLAlchemy, for libpq drivers, or for another database."""

from __future__ import annotations

import pytest

from app.core.database_urls import libpq_url, sqlalchemy_url, with_database

SPELLINGS = [
    "postgres://u:p@db:5432/x",
    "postgresql://u:p@db:5432/x",
    "postgresql+asyncpg://u:p@db:5432/x",
]


@pytest.mark.parametrize("url", SPELLINGS)
def test_every_accepted_spelling_runs_on_asyncpg_under_sqlalchemy(url: str) -> None:
    assert sqlalchemy_url(url) == "postgresql+asyncpg://u:p@db:5432/x"


@pytest.mark.parametrize("url", SPELLINGS)
def test_every_accepted_spelling_becomes_a_plain_libpq_uri(url: str) -> None:
    assert libpq_url(url) == "postgresql://u:p@db:5432/x"


def test_the_embedded_servers_socket_uri_survives_both_ways() -> None:
    embedded = "postgresql://postgres:@/adiuva?host=/tmp/runtime-0/pg"

    as_sqlalchemy = sqlalchemy_url(embedded)

    assert as_sqlalchemy == "postgresql+asyncpg://postgres:@/adiuva?host=%2Ftmp%2Fruntime-0%2Fpg"
    assert libpq_url(as_sqlalchemy) == "postgresql://postgres:@/adiuva?host=%2Ftmp%2Fruntime-0%2Fpg"


def test_passwords_that_need_escaping_and_query_options_are_kept() -> None:
    url = "postgresql://app:p%40ss%2Fword@db/x?sslmode=require&application_name=adiuva"

    assert sqlalchemy_url(url) == (
        "postgresql+asyncpg://app:p%40ss%2Fword@db/x?application_name=adiuva&sslmode=require"
    )


def test_another_database_on_the_same_server_keeps_driver_user_and_options() -> None:
    url = "postgresql+asyncpg://u:p@[::1]:5433/adiuva?host=/sock"

    assert (
        with_database(url, "postgres")
        == "postgresql+asyncpg://u:p@[::1]:5433/postgres?host=%2Fsock"
    )
    assert with_database("postgresql://u@db", "x") == "postgresql://u@db/x"


@pytest.mark.parametrize("url", ["sqlite:///x.db", "postgresql+psycopg://u@db/x", "mysql://db/x"])
def test_other_databases_and_drivers_are_refused(url: str) -> None:
    for convert in (sqlalchemy_url, libpq_url):
        with pytest.raises(ValueError, match="not a PostgreSQL URL"):
            convert(url)


@pytest.mark.parametrize("url", ["", "db.example.com/x", "postgresql://u:secret@h1:5432,h2:5432/x"])
def test_unreadable_urls_are_refused_without_repeating_them(url: str) -> None:
    with pytest.raises(ValueError, match="not a URL SQLAlchemy can read") as refused:
        sqlalchemy_url(url)

    assert "secret" not in str(refused.value)
    assert refused.value.__context__ is None or refused.value.__suppress_context__
