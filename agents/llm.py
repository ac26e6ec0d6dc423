"""Chat models for the supervisors and sub-agents, all through LiteLLM."""

from __future__ import annotations

import logging
from typing import Literal

from langchain_core.language_models import BaseChatModel
from langchain_litellm import ChatLiteLLM, ChatLiteLLMRouter
from litellm.router import Router

from app.core.settings import Settings

Role = Literal["supervisor", "subagent"]

# LiteLLM gives its loggers their own stderr handlers at import, and logs every
# completion at INFO: send its records through the server's JSON handler
# instead, warnings and up only.
for _name in ("LiteLLM", "LiteLLM Router", "LiteLLM Proxy"):
    _logger = logging.getLogger(_name)
    _logger.handlers.clear()
    _logger.propagate = True
    _logger.setLevel(logging.WARNING)


class LLMNotConfiguredError(RuntimeError):
    """No model is configured; the message tells the operator what to set."""

    def __init__(self) -> None:
        super().__init__(
            "No language model is configured: set LLM_MODEL (a LiteLLM model string such as "
            "openai/gpt-4o-mini), and LLM_API_BASE / LLM_API_KEY as the provider needs."
        )


def model_name(settings: Settings, role: Role) -> str:
    override = (
        settings.llm_supervisor_model if role == "supervisor" else settings.llm_subagent_model
    )
    name = override or settings.llm_model
    if not name:
        raise LLMNotConfiguredError
    return name


def _deployment(settings: Settings, name: str) -> dict[str, object]:
    params: dict[str, object] = {"model": name, "timeout": settings.llm_timeout_s}
    if settings.llm_api_base:
        params["api_base"] = settings.llm_api_base
    if settings.llm_api_key:
        params["api_key"] = settings.llm_api_key
    return {"model_name": name, "litellm_params": params}


def chat_model(settings: Settings, role: Role) -> BaseChatModel:
    """The streaming chat model for `role`; with fallbacks, a LiteLLM router over them."""
    name = model_name(settings, role)
    if settings.llm_fallback_models:
        names = [name, *(m for m in settings.llm_fallback_models if m != name)]
        router = Router(
            model_list=[_deployment(settings, n) for n in names],
            fallbacks=[{name: names[1:]}],
            num_retries=settings.llm_max_retries,
        )
        return ChatLiteLLMRouter(router=router, model_name=name, streaming=True)
    return ChatLiteLLM(
        model=name,
        api_base=settings.llm_api_base,
        api_key=settings.llm_api_key,
        streaming=True,
        request_timeout=settings.llm_timeout_s,
        # ChatLiteLLM's own max_retries counts attempts (1 = no retry) and skips
        # server errors; the provider SDK's retries (with back-off, honouring
        # Retry-After) cover 429s and 5xx, so LLM_MAX_RETRIES goes there.
        max_retries=1,
        model_kwargs={"max_retries": settings.llm_max_retries},
    )
