"""`GET /usage` over HTTP: ranges at the edges of the calendar answer, never with a 500."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import insert

from app.usage.models import ModelUsage
from tests.billing.conftest import register

USAGE = "/api/v1/usage"


def no_usage(first: str, last: str) -> dict[str, Any]:
    nothing = {"model_calls": 0, "prompt_tokens": 0, "completion_tokens": 0, "cost_usd": 0.0}
    return {"from": first, "to": last, "total": nothing, "days": []}


@pytest.mark.parametrize("first", ["9999-12-31", "9999-12-03"])
async def test_a_start_near_the_calendars_last_day_is_refused_as_after_today(
    client: httpx.AsyncClient, first: str
) -> None:
    account = await register(client)

    response = await client.get(USAGE, params={"from": first}, headers=account.auth)

    assert (response.status_code, response.json()) == (400, {"detail": "`from` is after `to`"})


@pytest.mark.parametrize("last", ["0001-01-01", "0001-01-28", "0001-01-30"])
async def test_an_end_near_the_calendars_first_day_starts_the_range_on_that_day(
    client: httpx.AsyncClient, last: str
) -> None:
    account = await register(client)

    response = await client.get(USAGE, params={"to": last}, headers=account.auth)

    assert (response.status_code, response.json()) == (200, no_usage("0001-01-01", last))


async def test_the_calendars_last_day_can_end_a_range(client: httpx.AsyncClient) -> None:
    account = await register(client)

    response = await client.get(
        USAGE, params={"from": "9999-12-30", "to": "9999-12-31"}, headers=account.auth
    )

    assert (response.status_code, response.json()) == (200, no_usage("9999-12-30", "9999-12-31"))


async def test_a_day_holds_its_calls_up_to_its_last_microsecond(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    account = await register(client)
    instants = [
        dt.datetime(2026, 10, 31, 23, 59, 59, 999999, tzinfo=dt.UTC),
        dt.datetime(2026, 11, 1, tzinfo=dt.UTC),
        dt.datetime(2026, 11, 1, 23, 59, 59, 999999, tzinfo=dt.UTC),
        dt.datetime(2026, 11, 2, tzinfo=dt.UTC),
    ]
    async with app.state.engine.begin() as conn:
        await conn.execute(
            insert(ModelUsage),
            [
                {
                    "user_id": account.user_id,
                    "role": "supervisor",
                    "model": "m",
                    "prompt_tokens": 1,
                    "completion_tokens": 1,
                    "cost_usd": Decimal(0),
                    "duration_ms": 1.0,
                    "occurred_at": instant,
                }
                for instant in instants
            ],
        )

    response = await client.get(
        USAGE, params={"from": "2026-11-01", "to": "2026-11-01"}, headers=account.auth
    )

    assert response.status_code == 200, response.text
    assert [day["date"] for day in response.json()["days"]] == ["2026-11-01"]
    assert response.json()["total"]["model_calls"] == 2
