"""The tiers domain's dependencies: the limiter, and the per-address limit of open routes.

Routes without a user put `LIMITED_BY_ADDRESS` in their `dependencies=`; routes with
one get the user's limit through `app.auth.dependencies.CurrentUser`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated

from fastapi import Depends
from starlette.requests import HTTPConnection

from app.core.dependencies import SettingsDep, from_state
from app.core.rate_limit import RateLimiter
from app.tiers.effects import DowngradeEffect
from app.tiers.rate_limits import limit_address

RateLimiterDep = Annotated[RateLimiter, Depends(from_state("rate_limiter"))]


def client_address(conn: HTTPConnection) -> str:
    """The client's address as uvicorn resolved it (behind a trusted proxy, from
    `X-Forwarded-For`: see FORWARDED_ALLOW_IPS in the README)."""
    return conn.client.host if conn.client is not None else "unknown"


async def _limited_by_address(
    conn: HTTPConnection, limiter: RateLimiterDep, settings: SettingsDep
) -> None:
    await limit_address(limiter=limiter, settings=settings, address=client_address(conn))


LIMITED_BY_ADDRESS = Depends(_limited_by_address)
# What a plan change does to other domains' data (`app.tiers.downgrade`).
DowngradeEffectsDep = Annotated[Sequence[DowngradeEffect], Depends(from_state("downgrade_effects"))]
