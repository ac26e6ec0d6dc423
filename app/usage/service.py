"""The user's usage, summed per day (UTC), role and model."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable
from decimal import Decimal

from sqlalchemy import Date, Row, cast, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.errors import AppError
from app.usage.models import ModelUsage
from app.usage.schemas import DayUsage, RoleUsage, UsageRead, UsageTotals

MAX_RANGE_DAYS = 366
DEFAULT_RANGE_DAYS = 30


class InvalidRangeError(AppError):
    status_code = 400
    detail = "Invalid date range"


def resolve_range(
    first: dt.date | None, last: dt.date | None, today: dt.date
) -> tuple[dt.date, dt.date]:
    """The range asked for, with defaults (the last 30 days); refuses inverted or huge ones."""
    span = dt.timedelta(days=DEFAULT_RANGE_DAYS - 1)
    # Neither default steps past the calendar's ends. A `from` within 30 days of
    # date.max is after today, so it is refused as inverted like any later `from`. A
    # `to` within 30 days of date.min starts the range on date.min, so one day more
    # or less at that edge never turns an answer into an error.
    last = last or (first + min(span, today - first) if first else today)
    first = first or last - min(span, last - dt.date.min)
    if first > last:
        raise InvalidRangeError("`from` is after `to`")
    if (last - first).days + 1 > MAX_RANGE_DAYS:
        raise InvalidRangeError(f"A range covers at most {MAX_RANGE_DAYS} days")
    return first, last


def _totals(rows: Iterable[UsageTotals]) -> UsageTotals:
    rows = list(rows)
    return UsageTotals(
        model_calls=sum(r.model_calls for r in rows),
        prompt_tokens=sum(r.prompt_tokens for r in rows),
        completion_tokens=sum(r.completion_tokens for r in rows),
        cost_usd=round(sum(r.cost_usd for r in rows), 8),
    )


def _role(row: Row[dt.date, str, str, int, int, int, Decimal]) -> RoleUsage:
    _, role, model, calls, prompt, completion, cost = row
    return RoleUsage(
        role=role,
        model=model,
        model_calls=calls,
        prompt_tokens=prompt,
        completion_tokens=completion,
        cost_usd=round(float(cost), 8),
    )


async def usage_between(
    *, session: AsyncSession, user_id: uuid.UUID, first: dt.date, last: dt.date
) -> UsageRead:
    """The user's model calls from `first` to `last` (UTC days, both included)."""
    start = dt.datetime.combine(first, dt.time(), tzinfo=dt.UTC)
    # The last microsecond of `last` (timestamptz keeps microseconds), not midnight
    # after it: there is no day after date.max.
    end = dt.datetime.combine(last, dt.time.max, tzinfo=dt.UTC)
    day = cast(func.timezone("UTC", ModelUsage.occurred_at), Date).label("day")
    query = (
        select(
            day,
            ModelUsage.role,
            ModelUsage.model,
            func.count(),
            func.sum(ModelUsage.prompt_tokens),
            func.sum(ModelUsage.completion_tokens),
            func.sum(ModelUsage.cost_usd),
        )
        .where(
            ModelUsage.user_id == user_id,
            ModelUsage.occurred_at >= start,
            ModelUsage.occurred_at <= end,
        )
        .group_by(day, ModelUsage.role, ModelUsage.model)
        .order_by(day, ModelUsage.role, ModelUsage.model)
    )
    by_day: dict[dt.date, list[RoleUsage]] = {}
    for row in await session.execute(query):
        by_day.setdefault(row[0], []).append(_role(row))
    days = [DayUsage(date=d, total=_totals(roles), roles=roles) for d, roles in by_day.items()]
    return UsageRead(from_=first, to=last, total=_totals(day.total for day in days), days=days)
