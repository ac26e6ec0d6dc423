"""Chat models for the supervisors and sub-agents, all through LiteLLM."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Literal

import openai
from langchain_core.callbacks import AsyncCallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import BaseMessage
from langchain_core.outputs import ChatGenerationChunk
from langchain_litellm import ChatLiteLLM, ChatLiteLLMRouter
from litellm.router import Router

Role = Literal["supervisor", "subagent"]
logger = logging.getLogger(__name__)


class LLMNotConfiguredError(RuntimeError):
    """No model is configured; the message tells the operator what to set."""

    def __init__(self) -> None:
        super().__init__(
            "No language model is configured: set LLM_MODEL (a LiteLLM model string such as "
            "openai/gpt-4o-mini), and LLM_API_BASE / LLM_API_KEY as the provider needs."
        )


class IncompleteResponseError(RuntimeError):
    """The model's stream ended without a finish reason: the answer is a fragment."""

    def __init__(self) -> None:
        super().__init__("the model's answer stream ended before the answer was complete")


# What a failed model call raises: the provider's error (after its retries), or a cut stream.
MODEL_ERRORS = (openai.APIError, IncompleteResponseError)


async def _complete_stream(stream: Any) -> AsyncIterator[Any]:
    """Pass LiteLLM's stream through; raise if the provider never said it was finished.

    LiteLLM ends every stream with a `finish_reason="stop"` chunk of its own,
    also when the provider's stream simply stopped. Its stream wrappers record
    the chunks they received in `chunks` (the Router's wrappers share the
    inner wrapper's list), and the closing chunk LiteLLM adds is not among
    them, so a finish reason there is the provider's own.
    """
    async for chunk in stream:
        yield chunk
    received = getattr(stream, "chunks", None)
    if received is not None and not any(
        chunk.choices and chunk.choices[0].finish_reason for chunk in received
    ):
        raise IncompleteResponseError


def _carries_output(chunk: ChatGenerationChunk) -> bool:
    message = chunk.message
    return bool(message.content or getattr(message, "tool_call_chunks", None))


class _CompleteAnswers(BaseChatModel):
    """Refuses answers whose stream was cut, retrying while nothing has been passed on.

    Once a chunk has gone downstream (it may already be on the user's screen)
    the call is not repeated: the error goes up and the turn ends with it.
    """

    cut_stream_retries: int = 0

    async def acompletion_with_retry(
        self, run_manager: AsyncCallbackManagerForLLMRun | None = None, **kwargs: Any
    ) -> Any:
        response = await super().acompletion_with_retry(  # type: ignore[misc]
            run_manager=run_manager, **kwargs
        )
        return _complete_stream(response) if kwargs.get("stream") else response

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        for attempt in range(self.cut_stream_retries + 1):
            passed_on = False
            try:
                async for chunk in super()._astream(messages, stop, run_manager, **kwargs):
                    passed_on = passed_on or _carries_output(chunk)
                    yield chunk
            except IncompleteResponseError:
                if passed_on or attempt == self.cut_stream_retries:
                    raise
                logger.warning("model stream cut before any output; retrying")
            else:
                return


class CompleteChatLiteLLM(_CompleteAnswers, ChatLiteLLM):
    """`ChatLiteLLM` that never takes a cut stream for a whole answer."""


class CompleteChatLiteLLMRouter(_CompleteAnswers, ChatLiteLLMRouter):
    """`ChatLiteLLMRouter` that never takes a cut stream for a whole answer."""


@dataclass(frozen=True, slots=True)
class ModelConfig:
    """How the agents reach their models; the server builds it from its settings.

    `model` is a LiteLLM model string ("openai/gpt-4o-mini"); the per-role
    overrides replace it for the supervisors or the sub-agents; the fallbacks
    are tried in order when it fails. `max_retries` retries a failed request
    (rate limits, 5xx) with back-off, and a stream cut before any output.
    """

    model: str | None = None
    api_base: str | None = None
    api_key: str | None = None
    fallback_models: tuple[str, ...] = ()
    supervisor_model: str | None = None
    subagent_model: str | None = None
    timeout_s: float = 60.0
    max_retries: int = 2

    def name_for(self, role: Role) -> str:
        override = self.supervisor_model if role == "supervisor" else self.subagent_model
        name = override or self.model
        if not name:
            raise LLMNotConfiguredError
        return name

    def deployment(self, name: str) -> dict[str, object]:
        params: dict[str, object] = {"model": name, "timeout": self.timeout_s}
        if self.api_base:
            params["api_base"] = self.api_base
        if self.api_key:
            params["api_key"] = self.api_key
        return {"model_name": name, "litellm_params": params}


def chat_model(config: ModelConfig, role: Role) -> BaseChatModel:
    """The chat model for `role`; with fallbacks, a LiteLLM router over them.

    Only the supervisors stream: their answer is what the user watches arrive.
    A sub-agent's answer is a report the supervisor reads whole, so its calls
    ask for the complete answer at once, which spares LiteLLM's per-chunk work
    (about a third of a sub-agent call's CPU) and LangChain's token callbacks.
    """
    name = config.name_for(role)
    streaming = role == "supervisor"
    # `disable_streaming` keeps LangChain from streaming anyway when the graph is
    # streamed with a token handler attached (LangGraph's "messages" mode).
    stream_settings: dict[str, Any] = {
        "streaming": streaming,
        "disable_streaming": not streaming,
    }
    if config.fallback_models:
        names = [name, *(m for m in config.fallback_models if m != name)]
        router = Router(
            model_list=[config.deployment(n) for n in names],
            fallbacks=[{name: names[1:]}],
            num_retries=config.max_retries,
        )
        return CompleteChatLiteLLMRouter(
            router=router,
            model_name=name,
            cut_stream_retries=config.max_retries,
            **stream_settings,
        )
    return CompleteChatLiteLLM(
        model=name,
        api_base=config.api_base,
        api_key=config.api_key,
        request_timeout=config.timeout_s,
        # ChatLiteLLM's own max_retries counts attempts (1 = no retry) and skips
        # server errors; the provider SDK's retries (with back-off, honouring
        # Retry-After) cover 429s and 5xx, so max_retries goes there.
        max_retries=1,
        model_kwargs={"max_retries": config.max_retries},
        cut_stream_retries=config.max_retries,
        **stream_settings,
    )
