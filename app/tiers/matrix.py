"""The tier matrix (SPEC §6): what each plan allows. The one place that knows the tiers.

Other code asks `limits_for(tier, settings=...)` or `require_feature(user, feature)`
and never compares tier names itself. The tier it is given is always the one
stored in the database (`users.tier`, written only by billing): nothing a
client sends can change it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum, StrEnum
from typing import Protocol

from app.core.settings import Settings
from app.tiers.exceptions import FeatureNotInPlanError

GIB = 1024**3


class Tier(StrEnum):
    """The plans, cheapest first: the order is the one `best_tier` ranks by."""

    FREE = "free"
    PRO = "pro"
    POWER = "power"
    TEAM = "team"


class Feature(Enum):
    """Features a plan either has or has not."""

    CLOUD_STORAGE = "cloud storage and backup"
    PLUGIN_MARKETPLACE = "the plugin marketplace"


@dataclass(frozen=True, slots=True)
class TierLimits:
    """One column of the matrix. `None` means unlimited."""

    tier: Tier
    batch_agents: int | None  # enabled batch agents, local and cloud together
    storage_bytes: int | None  # cloud storage and backup
    requests_per_minute: int  # per user; per seat on the team plan
    per_seat: bool
    plugin_marketplace: bool

    def requests_per_minute_for(self, seats: int) -> int:
        """The user's request limit: the plan's, times the seats where it is per seat."""
        return (
            self.requests_per_minute * max(1, seats) if self.per_seat else self.requests_per_minute
        )


class Subscriber(Protocol):
    """What the matrix needs of a user: the tier and seats stored with the account."""

    @property
    def tier(self) -> str: ...

    @property
    def seats(self) -> int: ...


@dataclass(frozen=True, slots=True)
class _Column:
    batch_agents: int | None
    storage_bytes: int | None
    plugin_marketplace: bool


# SPEC §6; the request rates are settings (RATE_LIMIT_*), see `limits_for`.
_MATRIX: dict[Tier, _Column] = {
    Tier.FREE: _Column(batch_agents=2, storage_bytes=0, plugin_marketplace=False),
    Tier.PRO: _Column(batch_agents=10, storage_bytes=5 * GIB, plugin_marketplace=False),
    Tier.POWER: _Column(batch_agents=None, storage_bytes=25 * GIB, plugin_marketplace=True),
    Tier.TEAM: _Column(batch_agents=None, storage_bytes=None, plugin_marketplace=True),
}


def _requests_per_minute(tier: Tier, settings: Settings) -> int:
    match tier:
        case Tier.FREE:
            return settings.rate_limit_free
        case Tier.PRO:
            return settings.rate_limit_pro
        case Tier.POWER:
            return settings.rate_limit_power
        case Tier.TEAM:
            return settings.rate_limit_team


def limits_for(tier: Tier | str, *, settings: Settings) -> TierLimits:
    """The limits of `tier`; its request rate comes from the RATE_LIMIT_* settings."""
    tier = Tier(tier)
    column = _MATRIX[tier]
    return TierLimits(
        tier=tier,
        batch_agents=column.batch_agents,
        storage_bytes=column.storage_bytes,
        requests_per_minute=_requests_per_minute(tier, settings),
        per_seat=tier is Tier.TEAM,
        plugin_marketplace=column.plugin_marketplace,
    )


def has_feature(tier: Tier | str, feature: Feature) -> bool:
    """Whether `tier` includes `feature` (no setting changes that)."""
    column = _MATRIX[Tier(tier)]
    if feature is Feature.CLOUD_STORAGE:
        return column.storage_bytes is None or column.storage_bytes > 0
    return column.plugin_marketplace


def require_feature(user: Subscriber, feature: Feature) -> None:
    """Raise `FeatureNotInPlanError` (403) unless the user's plan includes `feature`."""
    if not has_feature(user.tier, feature):
        raise FeatureNotInPlanError(
            f"Your plan ({user.tier}) does not include {feature.value}; upgrade to use it"
        )


def is_paid(tier: Tier | str) -> bool:
    """Whether `tier` is one a subscription pays for (everything but free)."""
    return Tier(tier) is not Tier.FREE


def best_tier(tiers: Iterable[Tier | str]) -> Tier:
    """The highest of `tiers` (free when there is none): what a user with several
    live subscriptions gets."""
    order = list(Tier)
    return max((Tier(tier) for tier in tiers), key=order.index, default=Tier.FREE)


def is_lower(tier: Tier | str, than: Tier | str) -> bool:
    """Whether moving from `than` to `tier` is a downgrade."""
    order = list(Tier)
    return order.index(Tier(tier)) < order.index(Tier(than))
