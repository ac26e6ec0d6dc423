"""Request rate limits: per user by plan, per client address without one.

Every authenticated REST request and every chat request on the device socket
counts against the user's per-minute limit (`RATE_LIMIT_<TIER>`, the team plan
per seat). Unauthenticated routes (and requests whose token is refused) count
against their client address (`RATE_LIMIT_ANONYMOUS`). Past a limit:
`TooManyRequestsError`, which is 429 with `Retry-After` over HTTP and an
`error` frame `rate_limited` with `retry_after` on the socket.
"""

from __future__ import annotations

import uuid

from app.core.errors import TooManyRequestsError
from app.core.rate_limit import Quota, RateLimiter
from app.core.settings import Settings
from app.tiers.matrix import Subscriber, limits_for

# One bucket per user, whatever the transport: REST and the socket share it.
_USER_SCOPE = "user"
_ADDRESS_SCOPE = "address"


async def limit_user(
    *, limiter: RateLimiter, settings: Settings, user_id: uuid.UUID, plan: Subscriber
) -> None:
    """Count one request of the user; past their plan's limit, `TooManyRequestsError`.

    The limit is part of the bucket's identity, so a plan change applies to the
    very next request.
    """
    limits = limits_for(plan.tier, settings=settings)
    per_minute = limits.requests_per_minute_for(plan.seats)
    retry_after = await limiter.hit(Quota(per_minute), scope=_USER_SCOPE, key=str(user_id))
    if retry_after is not None:
        raise TooManyRequestsError(
            f"Rate limit exceeded: the {limits.tier} plan allows {per_minute} requests per minute",
            retry_after=retry_after,
        )


async def limit_address(*, limiter: RateLimiter, settings: Settings, address: str) -> None:
    """Count one unauthenticated request from `address`; past RATE_LIMIT_ANONYMOUS, 429."""
    per_minute = settings.rate_limit_anonymous
    retry_after = await limiter.hit(Quota(per_minute), scope=_ADDRESS_SCOPE, key=address)
    if retry_after is not None:
        raise TooManyRequestsError(
            f"Rate limit exceeded: {per_minute} requests per minute from one address "
            "without signing in",
            retry_after=retry_after,
        )
