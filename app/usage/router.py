"""`GET /usage`: what the user's model calls used and cost, per day and role."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, Query

from app.auth.dependencies import CurrentUser
from app.core.dependencies import SessionDep
from app.core.responses import AUTHENTICATED, EVERY_ROUTE, error
from app.usage import service
from app.usage.schemas import UsageRead

router = APIRouter(tags=["usage"], responses=EVERY_ROUTE)


_DAY = r"^\d{4}-\d{2}-\d{2}$"


def _day_query(alias: str, description: str) -> Any:
    """A `YYYY-MM-DD` query parameter (documented as an OpenAPI date)."""
    return Query(
        alias=alias,
        pattern=_DAY,
        description=f"{description} YYYY-MM-DD.",
        json_schema_extra={"format": "date"},
    )


def _day(value: str | None, name: str) -> dt.date | None:
    # Pydantic would also take a number as a Unix time: only YYYY-MM-DD is a day here.
    if value is None:
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise service.InvalidRangeError(f"`{name}` is not a calendar date") from None


@router.get(
    "/usage",
    responses={
        **AUTHENTICATED,
        **error(400, "A day that does not exist, `from` after `to`, or over 366 days."),
    },
)
async def usage(
    user: CurrentUser,
    session: SessionDep,
    first: Annotated[str | None, _day_query("from", "First day (UTC), included.")] = None,
    last: Annotated[
        str | None, _day_query("to", "Last day (UTC), included; default today.")
    ] = None,
) -> UsageRead:
    """The signed-in user's model calls, tokens and cost per day, role and model.

    At most 366 days at once; without dates, the last 30 days.
    """
    today = dt.datetime.now(dt.UTC).date()
    first_day, last_day = service.resolve_range(_day(first, "from"), _day(last, "to"), today)
    return await service.usage_between(
        session=session, user_id=user.id, first=first_day, last=last_day
    )
