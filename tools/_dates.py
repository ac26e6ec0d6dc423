"""Dates between the model (ISO 8601 text) and the desktop (Unix milliseconds).

Both directions use the user's time zone from the turn context, so "2026-11-27"
means that day where the user lives, and a stored instant reads back as the
same local date.
"""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

from tools._client import ToolInputError
from tools.context import current_turn_context

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)


def to_millis(moment: datetime) -> int:
    """Unix milliseconds of an aware datetime, exactly (no float rounding)."""
    return (moment - _EPOCH) // _MS


def parse_moment(value: str | None, *, argument: str) -> int | None:
    """Read an ISO 8601 date or date-time given by the model as Unix milliseconds.

    None stays None (the argument was not given). A date alone means the start
    of that day (00:00) in the user's zone; a date-time without an offset is
    local time there; an explicit offset or "Z" is honoured as given.
    """
    if value is None:
        return None
    try:
        # fromisoformat reads a bare date as midnight, which is the rule we want.
        moment = datetime.fromisoformat(value.strip())
    except ValueError as exc:
        msg = (
            f"{argument} must be an ISO 8601 date or date-time such as 2026-11-27 or"
            f" 2026-11-27T17:00, got {value!r}"
        )
        raise ToolInputError(msg) from exc
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=current_turn_context().zone)
    return to_millis(moment)


def render_moment(value: object) -> str:
    """Show stored Unix milliseconds in the user's zone: the date, plus the time unless 00:00."""
    if isinstance(value, bool) or not isinstance(value, int):
        # Not what the desktop should send; show it rather than fail the answer.
        return str(value)
    local = (_EPOCH + value * _MS).astimezone(current_turn_context().zone)
    if local.time() == time():
        return local.date().isoformat()
    return local.strftime("%Y-%m-%d %H:%M")


def today_bounds() -> tuple[str, int, int]:
    """Today's ISO date in the user's zone and its first and last millisecond.

    The next midnight is computed on the calendar, not as +24 h, so days with
    a daylight-saving change (23 or 25 hours) are covered exactly.
    """
    context = current_turn_context()
    today = context.local_now().date()
    start = datetime.combine(today, time(), context.zone)
    end = datetime.combine(today + timedelta(days=1), time(), context.zone)
    return today.isoformat(), to_millis(start), to_millis(end) - 1
