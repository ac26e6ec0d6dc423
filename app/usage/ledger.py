"""Attributing model calls: one `UsageLedger` per chat request or batch run.

Every model call the server makes is written into the ledger of the request
or run it serves: its role (`supervisor`, a sub-agent's name, `embedding`,
`extraction`, `journey`), the model, the tokens the provider reported, the
cost and how long it took — never any text. The ledger is bound to the
context with `bind_ledger`, so code deep inside a turn (note indexing,
memory recall) finds it with `current_ledger()`; LangChain models report
through `app.usage.callbacks.UsageCallback`, everything else through
`account(...)`. `UsageRecorder` stores the calls once the work is done, and
`summary()` is what `stream_end.usage` and REST answers carry.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, datetime

from app.core.settings import ModelPrice
from app.observability import metrics
from app.usage.pricing import call_cost
from protocol.frames import TurnUsage

ROLE_SUPERVISOR = "supervisor"
ROLE_EMBEDDING = "embedding"
ROLE_EXTRACTION = "extraction"
ROLE_JOURNEY = "journey"


@dataclass(frozen=True, slots=True)
class ModelCall:
    """One model call as stored: who asked, which model, what it reported and cost."""

    role: str
    model: str
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    duration_ms: float
    occurred_at: datetime


@dataclass(slots=True)
class UsageLedger:
    """The model calls of one chat request (`request_id`) or batch run (`run_id`).

    The clock starts when the ledger is made (when the request arrived);
    `first_text()` marks the first answer text sent to the user.
    """

    user_id: uuid.UUID
    request_id: str | None = None
    run_id: str | None = None
    calls: list[ModelCall] = field(default_factory=list)
    started: float = field(default_factory=time.perf_counter)
    first_text_at: float | None = None

    def first_text(self) -> None:
        if self.first_text_at is None:
            self.first_text_at = time.perf_counter()

    def summary(self) -> TurnUsage:
        """The request's totals so far, and its timing up to now."""
        now = time.perf_counter()
        return TurnUsage(
            model_calls=len(self.calls),
            prompt_tokens=sum(call.prompt_tokens for call in self.calls),
            completion_tokens=sum(call.completion_tokens for call in self.calls),
            cost_usd=round(sum(call.cost_usd for call in self.calls), 8),
            duration_ms=round((now - self.started) * 1000),
            first_token_ms=(
                None
                if self.first_text_at is None
                else round((self.first_text_at - self.started) * 1000)
            ),
        )


_current: ContextVar[UsageLedger | None] = ContextVar("usage_ledger", default=None)


@contextmanager
def bind_ledger(ledger: UsageLedger) -> Iterator[UsageLedger]:
    """Attribute every model call in this context (and the tasks it starts) to `ledger`."""
    token = _current.set(ledger)
    try:
        yield ledger
    finally:
        _current.reset(token)


def current_ledger() -> UsageLedger | None:
    """The ledger bound to this context; None outside any request or run."""
    return _current.get()


def account(
    *,
    role: str,
    model: str,
    prompt_tokens: int,
    completion_tokens: int,
    duration_s: float,
    prices: Mapping[str, ModelPrice],
    ledger: UsageLedger | None = None,
) -> ModelCall:
    """Count one finished model call in the metrics and in `ledger` (default: the bound one).

    A call made outside any request or run still counts in the metrics; it has
    no user to be stored under.
    """
    cost = call_cost(
        model, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens, prices=prices
    )
    call = ModelCall(
        role=role,
        model=model,
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        cost_usd=cost,
        duration_ms=round(duration_s * 1000, 3),
        occurred_at=datetime.now(UTC),
    )
    metrics.MODEL_CALLS.labels(role, model, "ok").inc()
    metrics.MODEL_TOKENS.labels(role, model, "prompt").inc(prompt_tokens)
    metrics.MODEL_TOKENS.labels(role, model, "completion").inc(completion_tokens)
    metrics.MODEL_COST.labels(role, model).inc(cost)
    metrics.MODEL_CALL_DURATION.labels(role, model).observe(duration_s)
    target = ledger if ledger is not None else _current.get()
    if target is not None:
        target.calls.append(call)
    return call


def account_failure(*, role: str, model: str) -> None:
    """Count a model call that failed: nothing was reported, so nothing is stored."""
    metrics.MODEL_CALLS.labels(role, model, "error").inc()
