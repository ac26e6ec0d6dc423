"""The one rate-limiting mechanism for requests: moving windows kept by the `limits` package.

`RateLimiter` counts hits per (scope, key) in a moving window: exact (no
approximation at window edges), so "20 a minute" never lets a 21st through.
The counts live where RATE_LIMIT_STORAGE_URI says: in this process by default
(`memory://`), or in a store every instance shares (`redis://…`; README, Rate
limits). What is limited and by how much is decided by its users
(`app.tiers.rate_limits`, the login throttle in `app.auth.service`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from limits import RateLimitItem, RateLimitItemPerSecond
from limits.aio.storage import Storage
from limits.aio.strategies import MovingWindowRateLimiter
from limits.storage import storage_from_string

_ASYNC = "async+"


@dataclass(frozen=True, slots=True)
class Quota:
    """At most `limit` hits in any `window_s` seconds."""

    limit: int
    window_s: int = 60

    @property
    def item(self) -> RateLimitItem:
        return RateLimitItemPerSecond(self.limit, self.window_s)


def limiter_storage(uri: str) -> Storage:
    """The asyncio storage for a `limits` URI (`memory://`, `redis://host:6379`, …)."""
    storage = storage_from_string(uri if uri.startswith(_ASYNC) else _ASYNC + uri)
    if not isinstance(storage, Storage):  # pragma: no cover - the async+ prefix selects these
        msg = f"RATE_LIMIT_STORAGE_URI {uri!r} does not name an asyncio storage"
        raise TypeError(msg)
    return storage


class RateLimiter:
    """Moving-window counts per scope and key; one per app (`app.state.rate_limiter`)."""

    def __init__(self, storage: Storage) -> None:
        self._windows = MovingWindowRateLimiter(storage)

    async def hit(self, quota: Quota, *, scope: str, key: str) -> float | None:
        """Count one hit; None when it fits, else the seconds until one would."""
        if await self._windows.hit(quota.item, scope, key):
            return None
        stats = await self._windows.get_window_stats(quota.item, scope, key)
        return max(0.0, stats.reset_time - time.time())

    async def clear(self, quota: Quota, *, scope: str, key: str) -> None:
        """Forget every hit of `key` (a login that succeeded forgets its failures)."""
        await self._windows.clear(quota.item, scope, key)
