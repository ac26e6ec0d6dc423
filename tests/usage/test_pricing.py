"""What a model call costs: configured prices, LiteLLM's bundled map, or nothing."""

from __future__ import annotations

import datetime as dt

import litellm
import pytest

from app.core.settings import ModelPrice, Settings
from app.usage.pricing import call_cost
from app.usage.service import InvalidRangeError, resolve_range


def test_a_model_in_litellms_cost_map_costs_its_listed_price() -> None:
    listed = litellm.model_cost["gpt-4o-mini"]
    expected = 1000 * listed["input_cost_per_token"] + 200 * listed["output_cost_per_token"]

    cost = call_cost("openai/gpt-4o-mini", prompt_tokens=1000, completion_tokens=200, prices={})

    assert cost == pytest.approx(expected)
    assert cost > 0


@pytest.mark.parametrize("model", ["openai/scripted", "ollama_chat/llama3.1", "made-up"])
def test_unknown_and_local_models_cost_nothing(model: str) -> None:
    assert call_cost(model, prompt_tokens=10_000, completion_tokens=5_000, prices={}) == 0


def test_configured_prices_override_the_cost_map(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLM_PRICES", '{"openai/gpt-4o-mini": {"input": 2.0, "output": 10.0}}')
    settings = Settings()

    cost = call_cost(
        "openai/gpt-4o-mini",
        prompt_tokens=1_000_000,
        completion_tokens=500_000,
        prices=settings.llm_prices,
    )

    assert settings.llm_prices == {"openai/gpt-4o-mini": ModelPrice(input=2.0, output=10.0)}
    assert cost == pytest.approx(2.0 + 5.0)


TODAY = dt.date(2026, 11, 22)


def test_usage_range_defaults_to_the_last_30_days() -> None:
    assert resolve_range(None, None, TODAY) == (dt.date(2026, 10, 24), TODAY)


@pytest.mark.parametrize(
    ("first", "last"),
    [(dt.date(2026, 11, 2), dt.date(2026, 11, 1)), (dt.date(2025, 1, 1), dt.date(2026, 11, 1))],
    ids=["inverted", "over-366-days"],
)
def test_usage_range_refuses_inverted_and_huge_ranges(first: dt.date, last: dt.date) -> None:
    with pytest.raises(InvalidRangeError):
        resolve_range(first, last, TODAY)
