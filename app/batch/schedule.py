"""Cron schedules in the agent's own time zone: what is accepted, and when it fires next.

A schedule is evaluated on the wall clock of its IANA zone, so "0 9 * * 1"
is 09:00 on Mondays where the user lives, whatever daylight-saving time does.
A wall time skipped by a spring-forward change fires at the same offset
after the gap (02:30 becomes 03:30); a wall time that happens twice at a
fall-back change fires once, the first time.
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, available_timezones

from croniter import CroniterBadDateError, CroniterError, croniter
from croniter.croniter import HashExpander

MIN_INTERVAL_MINUTES = 5
MAX_CRON_CHARS = 100
MAX_TIMEZONE_CHARS = 64
ALIASES = frozenset(
    {"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"}
)
_FIELDS = 5
# Each field's name and the values it takes, for messages that say what is expected
# without repeating what the client sent.
_FIELD_SYNTAX = (
    ("minute", "0-59"),
    ("hour", "0-23"),
    ("day-of-month", "1-31"),
    ("month", "1-12 or JAN-DEC"),
    ("day-of-week", "0-7 or SUN-SAT"),
)
_HOURS = range(24)
_MINUTES = range(60)
_SLOTS_PER_REPEATED_HOUR = 60


class ScheduleError(ValueError):
    """A cron expression or time zone that cannot be used; the message says why."""


# The IANA zones this machine knows, without the two that are not places.
TIMEZONES = frozenset(available_timezones() - {"localtime", "Factory"})


def check_timezone(name: str) -> str:
    """`name` if it is an IANA time zone ("Europe/Berlin"), else `ScheduleError`."""
    if name not in TIMEZONES:
        msg = "unknown IANA time zone (expected a name such as Europe/Berlin)"
        raise ScheduleError(msg)
    return name


def _values(field: list[int | str], every: range) -> list[int]:
    return list(every) if field == ["*"] else sorted(int(value) for value in field)


def _shortest_gap_minutes(minutes: list[int], hours: list[int]) -> int:
    """The fewest minutes between two firings, judged on the minute and hour fields.

    Firings within one hour are as close as their minutes; the last firing of
    an hour and the first of the next are `first + 60 - last` apart whenever
    two consecutive hours (23 and 0 included) both fire.
    """
    gaps = [later - earlier for earlier, later in itertools.pairwise(minutes)]
    hour_set = set(hours)
    if any((hour + 1) % 24 in hour_set for hour in hour_set):
        gaps.append(minutes[0] + 60 - minutes[-1])
    return min(gaps, default=24 * 60)


def _check_fields(fields: list[str]) -> None:
    """`ScheduleError` naming the first field that is random, hashed or not cron at all.

    Croniter's R (random) and H (hashed) forms are refused: R draws a new value each
    time the schedule is read, so runs would come at irregular times, closer than
    `MIN_INTERVAL_MINUTES` apart; H needs a hash key we do not give. Croniter's own
    matcher tells them apart from names that merely contain the letters (MAR, THU).
    """
    random_or_hashed = HashExpander(croniter)
    for index, (field, (name, values)) in enumerate(zip(fields, _FIELD_SYNTAX, strict=True)):
        if random_or_hashed.match(None, index, field.lower()):
            msg = (
                f"the {name} field uses R (random) or H (hashed) values; give fixed ones"
                f" ({values}) so the agent runs at set times"
            )
            raise ScheduleError(msg)
        # Checked alone, with every other field `*`, so the message can say which
        # field is wrong; croniter's own message quotes the whole expression.
        alone = ["*"] * _FIELDS
        alone[index] = field
        if not croniter.is_valid(" ".join(alone)):
            msg = (
                f"not a valid cron expression: the {name} field takes {values}"
                " as one value, a range a-b, a list a,b or a step */n"
            )
            raise ScheduleError(msg)


def check_cron(expression: str) -> str:
    """The expression, stripped, if it is a 5-field cron (or an alias) firing at most
    every `MIN_INTERVAL_MINUTES` minutes and at least once; else `ScheduleError`.

    No message quotes the expression: validation errors never echo the input.
    """
    expression = " ".join(expression.split())
    if not expression:
        msg = "the schedule is empty; give a cron expression such as '0 9 * * 1'"
        raise ScheduleError(msg)
    if expression.startswith("@"):
        if expression not in ALIASES:
            msg = f"unknown cron alias; use one of {', '.join(sorted(ALIASES))}"
            raise ScheduleError(msg)
    else:
        fields = expression.split(" ")
        if len(fields) != _FIELDS:
            msg = (
                "a cron expression has exactly 5 fields (minute hour day-of-month month"
                f" day-of-week), got {len(fields)}"
            )
            raise ScheduleError(msg)
        _check_fields(fields)
    try:
        expanded = croniter(expression, datetime(2000, 1, 1)).expanded
    except CroniterError as exc:
        # Every field passed alone; should croniter still refuse how they combine, its
        # message is not passed on, as it quotes the expression.
        msg = "not a valid cron expression: its fields cannot be combined"
        raise ScheduleError(msg) from exc
    minutes, hours = _values(expanded[0], _MINUTES), _values(expanded[1], _HOURS)
    gap = _shortest_gap_minutes(minutes, hours)
    if gap < MIN_INTERVAL_MINUTES:
        msg = (
            f"the schedule fires {gap} minute(s) apart; agents run at most every"
            f" {MIN_INTERVAL_MINUTES} minutes"
        )
        raise ScheduleError(msg)
    try:
        next_run_after(expression, "UTC", datetime(2000, 1, 1, tzinfo=UTC))
    except ScheduleError:
        msg = "the schedule never fires (no such date)"
        raise ScheduleError(msg) from None
    return expression


def next_run_after(expression: str, timezone: str, after: datetime) -> datetime:
    """The first firing strictly after the aware instant `after`, as an aware UTC datetime."""
    zone = ZoneInfo(timezone)
    local = after.astimezone(zone).replace(tzinfo=None, second=0, microsecond=0)
    iterator = croniter(expression, local - timedelta(minutes=1))
    # Wall times are read as their first occurrence (fold 0). In the hour a
    # fall-back change repeats, slots already passed in real time are skipped,
    # so nothing fires twice; an hour holds at most 12 slots 5 minutes apart.
    for _ in range(_SLOTS_PER_REPEATED_HOUR + 1):
        try:
            wall: datetime = iterator.get_next(datetime)
        except CroniterBadDateError as exc:
            msg = "the schedule never fires"
            raise ScheduleError(msg) from exc
        candidate = wall.replace(tzinfo=zone).astimezone(UTC)
        if candidate > after:
            return candidate
    msg = f"no firing of {expression!r} found after {after.isoformat()}"  # unreachable
    raise ScheduleError(msg)
