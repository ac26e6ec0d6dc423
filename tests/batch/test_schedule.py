"""Cron schedules: what is accepted, and when they fire in the agent's time zone across DST."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from app.batch.schedule import ScheduleError, check_cron, check_timezone, next_run_after
from app.core.settings import Settings


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


@pytest.mark.parametrize(
    ("expression", "normalised"),
    [
        ("*/5 * * * *", "*/5 * * * *"),
        ("  0   9 * * 1 ", "0 9 * * 1"),
        ("55 * * * *", "55 * * * *"),
        ("0,30 8-18 * * mon-fri", "0,30 8-18 * * mon-fri"),
        ("@hourly", "@hourly"),
        ("@daily", "@daily"),
    ],
)
def test_schedules_at_most_every_five_minutes_are_accepted(
    expression: str, normalised: str
) -> None:
    assert check_cron(expression) == normalised


@pytest.mark.parametrize(
    ("expression", "reason"),
    [
        ("* * * * *", "fires 1 minute(s) apart"),
        ("*/4 * * * *", "fires 4 minute(s) apart"),
        ("58,1 * * * *", "fires 3 minute(s) apart"),  # 58 → 01 of the next hour
        ("0,58 0,23 * * *", "fires 2 minute(s) apart"),  # 23:58 → 00:00 the next day
        ("* * * * * *", "exactly 5 fields"),
        ("", "empty"),
        ("0 9 * *", "exactly 5 fields"),
        ("61 * * * *", "not a valid cron expression"),
        ("H 9 * * *", "R (random) or H (hashed)"),
        ("@reboot", "unknown cron alias"),
        ("0 0 30 2 *", "never fires"),
    ],
)
def test_invalid_or_too_frequent_schedules_are_refused(expression: str, reason: str) -> None:
    with pytest.raises(ScheduleError, match=reason.replace("(", r"\(").replace(")", r"\)")):
        check_cron(expression)


# Accepted before random and hashed fields were refused; names such as MAR, APR,
# FRI and THU hold the letters R and H, and L, W, # and ? are croniter's day syntax.
STILL_ACCEPTED = [
    "0 9 * * MON-FRI",
    "0 9 * * FRI",
    "0 9 * * THU",
    "0 9 1 JAN *",
    "0 9 1 APR *",
    "0 9 * MAR,APR fri",
    "0 9 1 apr-jan *",
    "0 9 1 DEC/3 *",
    "0 0 L * *",
    "0 9 15W * *",
    "0 9 * * 5#3",
    "0 9 * * FRI#2",
    "0 9 * * L5",
    "0 9 ? * THU",
    "0 9 * * SAT-SUN",
    "0 9 * * 7",
    "59/15 * * * *",
    "0 22-2 * * *",
    "0 0 29 2 *",
]


@pytest.mark.parametrize("expression", STILL_ACCEPTED)
def test_names_and_day_syntax_holding_the_letters_r_and_h_are_still_accepted(
    expression: str,
) -> None:
    assert check_cron(expression) == expression


# Croniter's R draws a new value each time the schedule is read, and H needs a hash
# key; in any field, with a range or a step.
RANDOM_OR_HASHED = [
    ("R * * * *", "minute", "0-59"),
    ("r(0-59) * * * *", "minute", "0-59"),
    ("R/5 * * * *", "minute", "0-59"),
    ("H * * * *", "minute", "0-59"),
    ("H(0-29)/10 * * * *", "minute", "0-59"),
    ("0 R * * *", "hour", "0-23"),
    ("0 h(8-18) * * *", "hour", "0-23"),
    ("0 9 R * *", "day-of-month", "1-31"),
    ("0 9 * H *", "month", "1-12 or JAN-DEC"),
    ("0 9 * * R", "day-of-week", "0-7 or SUN-SAT"),
]


def random_or_hashed(field: str, values: str) -> str:
    return (
        f"the {field} field uses R (random) or H (hashed) values; give fixed ones ({values})"
        " so the agent runs at set times"
    )


@pytest.mark.parametrize(("expression", "field", "values"), RANDOM_OR_HASHED)
def test_random_and_hashed_fields_are_refused(expression: str, field: str, values: str) -> None:
    with pytest.raises(ScheduleError) as refused:
        check_cron(expression)

    assert str(refused.value) == random_or_hashed(field, values)


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("61 * * * *", "the minute field takes 0-59"),
        ("0 0-25 * * *", "the hour field takes 0-23"),
        ("0 9 32 * *", "the day-of-month field takes 1-31"),
        ("0 9 * SEPT *", "the month field takes 1-12 or JAN-DEC"),
        ("0 0 * * 5l", "the day-of-week field takes 0-7 or SUN-SAT"),
        ("0 9 * * MON,TUE#1", "the day-of-week field takes 0-7 or SUN-SAT"),
    ],
)
def test_an_invalid_field_is_named_without_quoting_the_expression(
    expression: str, message: str
) -> None:
    with pytest.raises(ScheduleError) as refused:
        check_cron(expression)

    expected = (
        f"not a valid cron expression: {message} as one value, a range a-b, a list a,b"
        " or a step */n"
    )
    assert str(refused.value) == expected


def test_an_unknown_alias_is_refused_without_quoting_it() -> None:
    with pytest.raises(ScheduleError) as refused:
        check_cron("@fortnightly")

    assert str(refused.value) == (
        "unknown cron alias; use one of @annually, @daily, @hourly, @midnight, @monthly,"
        " @weekly, @yearly"
    )


def test_hours_apart_are_not_taken_for_minutes_apart() -> None:
    # 09:58 and 11:00 are an hour apart: the hours 9 and 11 are not consecutive.
    assert check_cron("0,58 9,11 * * *") == "0,58 9,11 * * *"


def test_monday_nine_is_nine_local_time_on_both_sides_of_the_spring_change() -> None:
    # Europe/Berlin moves to summer time on Sunday 28 March 2027.
    before = next_run_after("0 9 * * 1", "Europe/Berlin", utc(2027, 3, 20))
    after = next_run_after("0 9 * * 1", "Europe/Berlin", before)

    assert before == utc(2027, 3, 22, 8)  # 09:00 CET
    assert after == utc(2027, 3, 29, 7)  # 09:00 CEST: an hour earlier in UTC


def test_a_daily_schedule_crosses_the_autumn_change_in_new_york() -> None:
    # America/New_York falls back on Sunday 1 November 2026.
    saturday = next_run_after("0 9 * * *", "America/New_York", utc(2026, 10, 31, 12))
    sunday = next_run_after("0 9 * * *", "America/New_York", saturday)
    monday = next_run_after("0 9 * * *", "America/New_York", sunday)

    assert saturday == utc(2026, 10, 31, 13)  # 09:00 EDT
    assert sunday == utc(2026, 11, 1, 14)  # 09:00 EST, the day of the change
    assert monday == utc(2026, 11, 2, 14)


def test_a_wall_time_skipped_by_spring_forward_fires_after_the_gap() -> None:
    # 02:30 does not exist in Berlin on 28 March 2027; it fires at 03:30 CEST (01:30 UTC).
    assert next_run_after("30 2 * * *", "Europe/Berlin", utc(2027, 3, 28)) == utc(
        2027, 3, 28, 1, 30
    )


def test_a_wall_time_repeated_by_fall_back_fires_once() -> None:
    # 01:30 happens twice in New York on 1 November 2026 (EDT, then EST).
    first = next_run_after("30 1 * * *", "America/New_York", utc(2026, 11, 1, 4))
    following = next_run_after("30 1 * * *", "America/New_York", first)

    assert first == utc(2026, 11, 1, 5, 30)  # 01:30 EDT
    assert following == utc(2026, 11, 2, 6, 30)  # not 01:30 EST the same night


def test_missed_slots_give_the_next_slot_after_now_not_the_first_missed() -> None:
    now = utc(2026, 11, 23, 12, 7)
    assert next_run_after("*/5 * * * *", "UTC", now) == utc(2026, 11, 23, 12, 10)
    assert next_run_after("*/5 * * * *", "UTC", utc(2026, 11, 23, 12, 10)) == utc(
        2026, 11, 23, 12, 15
    )


def test_time_zones_must_be_iana_names() -> None:
    assert check_timezone("Asia/Kolkata") == "Asia/Kolkata"
    for name in ("Mars/Olympus", "CET+1", "../etc/passwd", ""):
        with pytest.raises(ScheduleError) as refused:
            check_timezone(name)
        assert str(refused.value) == (
            "unknown IANA time zone (expected a name such as Europe/Berlin)"
        )


def test_stale_runs_must_outlive_two_scheduler_passes() -> None:
    with pytest.raises(ValueError, match="BATCH_STALE_RUN_S must be at least twice"):
        Settings(_env_file=None, batch_scheduler_interval_s=30, batch_stale_run_s=59)
    assert Settings(_env_file=None, batch_scheduler_interval_s=30, batch_stale_run_s=60)
