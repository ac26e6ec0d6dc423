"""`UsageCallback`: a LangChain callback that accounts for every chat-model call of a graph.

Given in the run's config (`{"callbacks": [UsageCallback(...)]}`), it is
inherited by every model inside the graph, the sub-agents' included. The role
of a call is the agent's name LangChain puts in the run's metadata
(`lc_agent_name`: `task_agent`, `note_agent`, ...); the supervisors have none
and are `supervisor`. A fixed `role` (`extraction`, `journey`) replaces it.
Each call also gets a trace span (`app.observability.tracing`).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from langchain_core.callbacks import AsyncCallbackHandler
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import LLMResult
from opentelemetry.trace import Span, Status, StatusCode

from app.core.settings import ModelPrice
from app.observability.tracing import tracer
from app.usage.ledger import ROLE_SUPERVISOR, UsageLedger, account, account_failure

AGENT_NAME_KEY = "lc_agent_name"
UNKNOWN_MODEL = "unknown"


@dataclass(slots=True)
class _OpenCall:
    role: str
    model: str
    started: float
    span: Span


def _tokens(result: LLMResult) -> tuple[int, int]:
    """Prompt and completion tokens as the provider reported them (0 when it did not)."""
    prompt = completion = 0
    for generations in result.generations:
        for generation in generations:
            message = getattr(generation, "message", None)
            usage = message.usage_metadata if isinstance(message, AIMessage) else None
            if usage:
                prompt += usage.get("input_tokens", 0)
                completion += usage.get("output_tokens", 0)
    return prompt, completion


class UsageCallback(AsyncCallbackHandler):
    """Writes each finished chat-model call into `ledger` (and the metrics)."""

    # Run in the caller's task, not a thread: the handler only does arithmetic.
    run_inline = True
    # Model calls are all it listens to: LangChain then skips it for the graph's
    # many chain, tool and custom events (most of its cost per turn otherwise).
    ignore_chain = True
    ignore_agent = True
    ignore_retriever = True
    ignore_custom_event = True

    def __init__(
        self,
        ledger: UsageLedger,
        *,
        prices: Mapping[str, ModelPrice],
        role: str | None = None,
    ) -> None:
        self._ledger = ledger
        self._prices = prices
        self._role = role
        self._open: dict[uuid.UUID, _OpenCall] = {}

    def _role_of(self, metadata: dict[str, Any] | None) -> str:
        if self._role is not None:
            return self._role
        name = (metadata or {}).get(AGENT_NAME_KEY)
        return str(name) if name else ROLE_SUPERVISOR

    async def on_chat_model_start(
        self,
        serialized: dict[str, Any],
        messages: list[list[BaseMessage]],
        *,
        run_id: uuid.UUID,
        parent_run_id: uuid.UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        params = kwargs.get("invocation_params") or {}
        model = str(params.get("model") or params.get("model_name") or UNKNOWN_MODEL)
        role = self._role_of(metadata)
        attributes: dict[str, str] = {"adiuva.role": role, "gen_ai.request.model": model}
        if self._ledger.request_id is not None:
            attributes["adiuva.request_id"] = self._ledger.request_id
        if self._ledger.run_id is not None:
            attributes["adiuva.run_id"] = self._ledger.run_id
        span = tracer().start_span(f"model {role}", attributes=attributes)
        self._open[run_id] = _OpenCall(role, model, time.perf_counter(), span)

    async def on_llm_end(self, response: LLMResult, *, run_id: uuid.UUID, **kwargs: Any) -> None:
        call = self._open.pop(run_id, None)
        if call is None:
            return
        prompt, completion = _tokens(response)
        account(
            role=call.role,
            model=call.model,
            prompt_tokens=prompt,
            completion_tokens=completion,
            duration_s=time.perf_counter() - call.started,
            prices=self._prices,
            ledger=self._ledger,
        )
        call.span.set_attribute("gen_ai.usage.input_tokens", prompt)
        call.span.set_attribute("gen_ai.usage.output_tokens", completion)
        call.span.end()

    async def on_llm_error(self, error: BaseException, *, run_id: uuid.UUID, **kwargs: Any) -> None:
        call = self._open.pop(run_id, None)
        if call is None:
            return
        account_failure(role=call.role, model=call.model)
        # The error's type only: provider messages can quote the prompt.
        call.span.set_status(Status(StatusCode.ERROR, type(error).__name__))
        call.span.end()
