"""Text PostgreSQL cannot store (the NUL character) is the client's 422, on any route.

JSON (`\\u0000`) and URLs (`%00`) carry it; no text column takes it. Whichever
route's statement meets it, the answer is the same 422, nothing is stored, and
the log says what happened without quoting what the user sent.
"""

from __future__ import annotations

import httpx
import psycopg
import pytest
from fastapi import FastAPI
from psycopg.types.string import StrDumper
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from app.core.database import is_unstorable_text
from tests.billing.conftest import register
from tests.core.configured_logging import configured_logging

UNSTORABLE = {"detail": "Text may not contain the NUL character (U+0000)"}
SECRET = "a-device-the-log-must-not-name"


async def test_a_nul_in_a_body_or_a_query_is_422_stores_nothing_and_is_not_logged(
    client: httpx.AsyncClient,
) -> None:
    account = await register(client)
    agent = {
        "name": "Inbox",
        "device_id": f"{SECRET}\u0000",
        "directory_paths": ["/home/me/inbox"],
        "schedule_cron": "0 9 * * 1",
    }

    with configured_logging("INFO") as out:
        created = await client.post("/api/v1/agents/local", json=agent, headers=account.auth)
        searched = await client.get(
            "/api/v1/plugins", params={"q": f"{SECRET}\u0000"}, headers=account.auth
        )
    listed = await client.get("/api/v1/agents/local", headers=account.auth)

    assert (created.status_code, created.json()) == (422, UNSTORABLE)
    assert (searched.status_code, searched.json()) == (422, UNSTORABLE)
    assert listed.json() == []
    logged = out.getvalue()
    assert "request text the database cannot store" in logged
    assert SECRET not in logged
    assert "Traceback" not in logged
    assert '"level": "error"' not in logged.lower()


async def test_a_failed_statement_does_not_quote_what_it_was_given(app: FastAPI) -> None:
    # A failed statement's message goes to the log; SQLAlchemy would add its
    # parameters, which are users' text.
    engine: AsyncEngine = app.state.engine

    with pytest.raises(DBAPIError) as failed:
        async with engine.connect() as connection:
            await connection.execute(text("SELECT CAST(:value AS text), 1 / 0"), {"value": SECRET})

    assert "division by zero" in str(failed.value)
    assert SECRET not in str(failed.value)


def test_psycopgs_own_refusal_of_a_nul_is_unstorable_text_too() -> None:
    # The checkpointer's driver refuses a NUL before PostgreSQL sees it, with no SQLSTATE.
    with pytest.raises(psycopg.DataError) as refused:
        StrDumper(str).dump("thread\x00")

    assert is_unstorable_text(refused.value)
    assert not is_unstorable_text(psycopg.DataError("another data error"))
