"""The tier matrix (SPEC §6): every limit, the settings behind the rates, features."""

from __future__ import annotations

import pytest

from app.auth.service import Plan
from app.core.settings import Settings
from app.tiers.exceptions import FeatureNotInPlanError
from app.tiers.matrix import (
    GIB,
    Feature,
    Tier,
    best_tier,
    has_feature,
    is_lower,
    is_paid,
    limits_for,
    require_feature,
)

DEFAULTS = Settings(_env_file=None)


@pytest.mark.parametrize(
    ("tier", "agents", "storage", "per_minute", "plugins"),
    [
        (Tier.FREE, 2, 0, 20, False),
        (Tier.PRO, 10, 5 * GIB, 60, False),
        (Tier.POWER, None, 25 * GIB, 120, True),
        (Tier.TEAM, None, None, 200, True),
    ],
)
def test_every_limit_of_the_matrix(
    tier: Tier, agents: int | None, storage: int | None, per_minute: int, plugins: bool
) -> None:
    limits = limits_for(tier, settings=DEFAULTS)

    assert limits.tier is tier
    assert limits.batch_agents == agents
    assert limits.storage_bytes == storage
    assert limits.requests_per_minute == per_minute
    assert limits.plugin_marketplace is plugins
    assert has_feature(tier, Feature.PLUGIN_MARKETPLACE) is plugins
    assert has_feature(tier, Feature.CLOUD_STORAGE) is (tier is not Tier.FREE)


def test_request_rates_are_the_rate_limit_settings() -> None:
    settings = Settings(
        _env_file=None,
        rate_limit_free=1,
        rate_limit_pro=2,
        rate_limit_power=3,
        rate_limit_team=4,
    )

    assert [limits_for(tier, settings=settings).requests_per_minute for tier in Tier] == [
        1,
        2,
        3,
        4,
    ]


def test_the_rate_limit_settings_are_read_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name, value in {
        "RATE_LIMIT_FREE": "7",
        "RATE_LIMIT_TEAM": "9",
        "RATE_LIMIT_ANONYMOUS": "11",
        "LOGIN_MAX_FAILURES": "3",
        "LOGIN_LOCK_S": "120",
    }.items():
        monkeypatch.setenv(name, value)

    settings = Settings(_env_file=None)

    assert (settings.rate_limit_free, settings.rate_limit_team) == (7, 9)
    assert (settings.rate_limit_anonymous, settings.login_max_failures) == (11, 3)
    assert settings.login_lock_s == 120
    assert (DEFAULTS.rate_limit_anonymous, DEFAULTS.login_max_failures) == (60, 5)
    assert DEFAULTS.login_lock_s == 60


def test_the_team_plan_counts_requests_per_seat_the_others_per_user() -> None:
    team, pro = limits_for(Tier.TEAM, settings=DEFAULTS), limits_for(Tier.PRO, settings=DEFAULTS)

    assert team.requests_per_minute_for(3) == 600
    assert pro.requests_per_minute_for(3) == 60


def test_require_feature_refuses_a_plan_without_it_with_403() -> None:
    require_feature(Plan(tier="power", seats=1), Feature.PLUGIN_MARKETPLACE)

    with pytest.raises(FeatureNotInPlanError) as refused:
        require_feature(Plan(tier="pro", seats=1), Feature.PLUGIN_MARKETPLACE)

    assert refused.value.status_code == 403
    assert refused.value.detail == (
        "Your plan (pro) does not include the plugin marketplace; upgrade to use it"
    )


def test_tiers_rank_cheapest_first() -> None:
    assert best_tier([]) is Tier.FREE
    assert best_tier(["pro", "team", "power"]) is Tier.TEAM
    assert is_lower(Tier.FREE, Tier.PRO)
    assert not is_lower(Tier.TEAM, Tier.POWER)
    assert [is_paid(tier) for tier in Tier] == [False, True, True, True]


def test_an_unknown_tier_is_refused() -> None:
    with pytest.raises(ValueError, match="enterprise"):
        limits_for("enterprise", settings=DEFAULTS)
