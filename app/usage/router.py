"""`GET /usage`: what the user's model calls used and cost, per day and role."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import APIRouter, Query

from app.auth.dependencies import CurrentUser
from app.core.dependencies import SessionDep
from app.core.responses import AUTHENTICATED, EVERY_ROUTE, error
from app.usage import service
from app.usage.schemas import UsageRead

router = APIRouter(tags=["usage"], responses=EVERY_ROUTE)


@router.get(
    "/usage",
    responses={
        **AUTHENTICATED,
        **error(400, "`from` is after `to`, or the range is longer than 366 days."),
    },
)
async def usage(
    user: CurrentUser,
    session: SessionDep,
    first: Annotated[
        dt.date | None, Query(alias="from", description="First day (UTC), included.")
    ] = None,
    last: Annotated[
        dt.date | None,
        Query(alias="to", description="Last day (UTC), included; default today."),
    ] = None,
) -> UsageRead:
    """The signed-in user's model calls, tokens and cost per day, role and model.

    At most 366 days at once; without dates, the last 30 days.
    """
    first, last = service.resolve_range(first, last, dt.datetime.now(dt.UTC).date())
    return await service.usage_between(session=session, user_id=user.id, first=first, last=last)
