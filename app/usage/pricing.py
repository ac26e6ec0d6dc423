"""What a model call costs: LLM_PRICES first, then LiteLLM's bundled cost map, else 0."""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache

import litellm

from app.core.settings import ModelPrice

_PER_MILLION = 1_000_000


@lru_cache(maxsize=256)
def _cost_map_price(model: str) -> tuple[float, float]:
    """USD per prompt token and per completion token in LiteLLM's map; (0, 0) if unknown."""
    try:
        info = litellm.get_model_info(model)
    except Exception:  # LiteLLM raises plain Exceptions for models it does not know
        return 0.0, 0.0
    return float(info.get("input_cost_per_token") or 0.0), float(
        info.get("output_cost_per_token") or 0.0
    )


def call_cost(
    model: str,
    *,
    prompt_tokens: int,
    completion_tokens: int,
    prices: Mapping[str, ModelPrice],
) -> float:
    """The cost in USD of one call to `model` with these token counts."""
    price = prices.get(model)
    if price is not None:
        return (prompt_tokens * price.input + completion_tokens * price.output) / _PER_MILLION
    per_prompt, per_completion = _cost_map_price(model)
    return prompt_tokens * per_prompt + completion_tokens * per_completion
