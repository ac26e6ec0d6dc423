"""The per-turn context: time zone, clock and embedder, bound per asyncio task."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from tools.context import TurnContext, current_turn_context, turn_context


def test_without_a_bound_turn_the_context_is_utc_on_the_real_clock() -> None:
    context = current_turn_context()

    assert (context.timezone, context.now, context.embed) == ("UTC", None, None)
    assert abs(context.local_now() - datetime.now(UTC)) < timedelta(seconds=5)
    assert context.local_now().utcoffset() == timedelta(0)


def test_turn_context_binds_for_its_block_and_then_restores() -> None:
    with turn_context(timezone="Asia/Tokyo") as bound:
        assert current_turn_context() is bound
        assert bound.local_now().utcoffset() == timedelta(hours=9)

    assert current_turn_context().timezone == "UTC"


def test_a_fixed_now_is_read_in_the_users_zone() -> None:
    naive = TurnContext(timezone="Europe/Berlin", now=datetime(2026, 11, 27, 8, 0))
    aware = TurnContext(timezone="Europe/Berlin", now=datetime(2026, 11, 27, 23, 30, tzinfo=UTC))

    assert naive.local_now().isoformat() == "2026-11-27T08:00:00+01:00"
    assert aware.local_now().isoformat() == "2026-11-28T00:30:00+01:00"


@pytest.mark.parametrize("name", ["Mars/Olympus", "", "../etc/passwd"])
def test_an_unknown_time_zone_is_refused_where_it_enters(name: str) -> None:
    with pytest.raises(ValueError, match="unknown IANA time zone"):
        TurnContext(timezone=name)


async def test_concurrent_turns_each_see_their_own_context() -> None:
    async def turn(zone: str) -> str:
        with turn_context(timezone=zone):
            await asyncio.sleep(0)  # let the other turn bind its own context meanwhile
            return current_turn_context().timezone

    assert list(await asyncio.gather(turn("Europe/Berlin"), turn("America/New_York"))) == [
        "Europe/Berlin",
        "America/New_York",
    ]
