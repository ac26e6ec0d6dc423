"""A scripted LangChain chat model, for unit tests of graphs without HTTP.

LangChain's own fakes cannot bind tools and drop tool calls when streaming; this one
binds tools like a real model (`bind_tools` converts them to OpenAI tool schemas and
binds them as the `tools` kwarg) and streams like one: text as several
`AIMessageChunk`s, tool calls as `tool_call_chunks` (id and name first, arguments
split over later chunks, `index` set), usage on the final chunk. So LangGraph's
`messages` stream mode sees tokens, and `langchain.agents.create_agent` runs its
tool loop with it.

    model = ScriptedChatModel(policy=ScriptedPolicy(
        ScriptedToolCall("get_weather", {"city": "Paris"}),
        "It is sunny in Paris.",
    ))
    agent = create_agent(model, tools=[get_weather])

The policy is called with the prompt's messages and the names of the bound tools
and returns a `ReplyLike` (see `tests.llm.replies`); on the async paths it may
return an awaitable of one. Every call is recorded in `model.calls`.
"""

from __future__ import annotations

import inspect
import itertools
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel, LangSmithParams, LanguageModelInput
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    InvalidToolCall,
    ToolCall,
    ToolCallChunk,
)
from langchain_core.messages.ai import UsageMetadata
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable
from langchain_core.tools import BaseTool
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import PrivateAttr

from tests.llm.replies import (
    DEFAULT_CHUNK_SIZE,
    ErrorReply,
    Reply,
    ReplyLike,
    ScriptedModelError,
    ScriptedPolicy,
    ScriptedToolCall,
    TextReply,
    ToolCallsReply,
    as_reply,
    estimate_tokens,
    numbered_calls,
    split_pieces,
)

__all__ = [
    "ErrorReply",
    "ModelCall",
    "ModelPolicy",
    "Reply",
    "ReplyLike",
    "ScriptedChatModel",
    "ScriptedModelError",
    "ScriptedPolicy",
    "ScriptedToolCall",
    "TextReply",
    "ToolCallsReply",
]

ModelPolicy: TypeAlias = Callable[[list[BaseMessage], list[str]], ReplyLike | Awaitable[ReplyLike]]
"""Decides the answer from the prompt messages and the bound tool names.

An awaitable result is only allowed on the async paths (`ainvoke`, `astream`).
"""


@dataclass(frozen=True)
class ModelCall:
    """One call of the fake model, as the policy saw it."""

    messages: list[BaseMessage]
    tools: list[dict[str, Any]]
    """The bound tools as OpenAI tool schemas (`{"type": "function", "function": ...}`)."""
    kwargs: dict[str, Any]
    """Every other call kwarg (`tool_choice`, `stop`...)."""

    @property
    def tool_names(self) -> list[str]:
        """Names of the bound tools, in order."""
        return _tool_names(self.tools)


def _tool_names(tools: Sequence[dict[str, Any]]) -> list[str]:
    return [str(tool["function"]["name"]) for tool in tools if "function" in tool]


class ScriptedChatModel(BaseChatModel):
    """A `BaseChatModel` whose answers come from a policy (see the module docstring)."""

    policy: ModelPolicy
    """Decides each answer; a `ScriptedPolicy` answers from a queue."""
    model: str = "scripted"
    """Reported as `ls_model_name` and `response_metadata["model_name"]`."""
    provider: str = "scripted"
    """Reported as `ls_provider` and `response_metadata["model_provider"]`.

    deepagents picks its harness profile by `ls_provider`; set `"litellm"` to get the
    profile production's `ChatLiteLLM` gets.
    """
    chunk_size: int = DEFAULT_CHUNK_SIZE
    """Characters per streamed text or argument piece, unless the reply sets one."""

    _calls: list[ModelCall] = PrivateAttr(default_factory=list)
    _ids: Iterator[int] = PrivateAttr(default_factory=lambda: itertools.count(1))

    @property
    def calls(self) -> list[ModelCall]:
        """Every call so far, in order (shared by the model and its bindings)."""
        return self._calls

    @property
    def _llm_type(self) -> str:
        return "scripted-chat"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"model": self.model, "provider": self.provider}

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> LangSmithParams:
        params = super()._get_ls_params(stop=stop, **kwargs)
        params["ls_provider"] = self.provider
        params["ls_model_name"] = kwargs.get("model") or self.model
        return params

    def bind_tools(
        self,
        tools: Sequence[dict[str, Any] | type | Callable[..., Any] | BaseTool],
        *,
        tool_choice: str | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, AIMessage]:
        """Bind `tools`, converted to OpenAI tool schemas, as the `tools` call kwarg."""
        if tool_choice is not None:
            kwargs["tool_choice"] = tool_choice
        return self.bind(tools=[convert_to_openai_tool(tool) for tool in tools], **kwargs)

    # --- one call ---------------------------------------------------------------

    def _record(
        self, messages: list[BaseMessage], stop: list[str] | None, kwargs: dict[str, Any]
    ) -> tuple[ModelCall, int]:
        extra = {key: value for key, value in kwargs.items() if key != "tools"}
        if stop is not None:
            extra["stop"] = stop
        call = ModelCall(list(messages), list(kwargs.get("tools") or []), extra)
        self._calls.append(call)
        return call, next(self._ids)

    def _decide(self, call: ModelCall) -> ReplyLike | Awaitable[ReplyLike]:
        return self.policy(list(call.messages), call.tool_names)

    def _reply_sync(self, call: ModelCall) -> TextReply | ToolCallsReply:
        decided = self._decide(call)
        if inspect.isawaitable(decided):
            if inspect.iscoroutine(decided):
                decided.close()  # never awaited: close it to avoid the warning
            msg = "an async policy needs the async API (ainvoke, astream)"
            raise TypeError(msg)
        return _checked(as_reply(decided))

    async def _reply_async(self, call: ModelCall) -> TextReply | ToolCallsReply:
        decided = self._decide(call)
        if inspect.isawaitable(decided):
            decided = await decided
        return _checked(as_reply(decided))

    def _message(
        self, call: ModelCall, reply: TextReply | ToolCallsReply, number: int
    ) -> AIMessage:
        calls = numbered_calls(reply, number)
        tool_calls: list[ToolCall] = []
        invalid: list[InvalidToolCall] = []
        for scripted in calls:
            try:
                args = json.loads(scripted.arguments_json)
                error = None if isinstance(args, dict) else "arguments are not a JSON object"
            except json.JSONDecodeError as exc:
                error = str(exc)
            if error is None:
                tool_calls.append(ToolCall(name=scripted.name, args=args, id=scripted.id))
            else:
                invalid.append(
                    InvalidToolCall(
                        type="invalid_tool_call",
                        name=scripted.name,
                        args=scripted.arguments_json,
                        id=scripted.id,
                        error=error,
                    )
                )
        return AIMessage(
            content=reply.text,
            tool_calls=tool_calls,
            invalid_tool_calls=invalid,
            usage_metadata=_usage(call, reply.text, calls),
            response_metadata={
                "model_name": self.model,
                "model_provider": self.provider,
                "finish_reason": "tool_calls" if calls else "stop",
            },
        )

    def _chunks(
        self, call: ModelCall, reply: TextReply | ToolCallsReply, number: int
    ) -> Iterator[ChatGenerationChunk]:
        calls = numbered_calls(reply, number)
        size = reply.chunk_size or self.chunk_size
        first = True

        def chunk(**fields: Any) -> ChatGenerationChunk:
            nonlocal first
            if first:
                fields["response_metadata"] = {
                    "model_name": self.model,
                    "model_provider": self.provider,
                }
                first = False
            return ChatGenerationChunk(message=AIMessageChunk(**fields))

        for piece in split_pieces(reply.text, size):
            yield chunk(content=piece)
        for index, scripted in enumerate(calls):
            yield chunk(
                content="",
                tool_call_chunks=[
                    ToolCallChunk(
                        type="tool_call_chunk",
                        name=scripted.name,
                        args="",
                        id=scripted.id,
                        index=index,
                    )
                ],
            )
            for piece in split_pieces(scripted.arguments_json, size, at_least=2):
                yield chunk(
                    content="",
                    tool_call_chunks=[
                        ToolCallChunk(
                            type="tool_call_chunk", name=None, args=piece, id=None, index=index
                        )
                    ],
                )
        final = chunk(
            content="",
            usage_metadata=_usage(call, reply.text, calls),
            chunk_position="last",
        )
        final.message.response_metadata["finish_reason"] = "tool_calls" if calls else "stop"
        yield final

    # --- BaseChatModel hooks --------------------------------------------------------

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        call, number = self._record(messages, stop, kwargs)
        message = self._message(call, self._reply_sync(call), number)
        return ChatResult(generations=[ChatGeneration(message=message)])

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        call, number = self._record(messages, stop, kwargs)
        message = self._message(call, await self._reply_async(call), number)
        return ChatResult(generations=[ChatGeneration(message=message)])

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        call, number = self._record(messages, stop, kwargs)
        yield from self._chunks(call, self._reply_sync(call), number)

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        # No on_llm_new_token here: langchain-core calls it for every chunk yielded.
        call, number = self._record(messages, stop, kwargs)
        for generation_chunk in self._chunks(call, await self._reply_async(call), number):
            yield generation_chunk


def _checked(reply: Reply) -> TextReply | ToolCallsReply:
    if isinstance(reply, ErrorReply):
        raise ScriptedModelError(reply)
    return reply


def _usage(call: ModelCall, text: str, calls: Sequence[ScriptedToolCall]) -> UsageMetadata:
    """Rough token counts: a quarter of the characters of the prompt and the answer."""
    prompt_chars = sum(len(_text(message.content)) for message in call.messages)
    prompt_chars += sum(
        len(json.dumps(message.tool_calls, default=str))
        for message in call.messages
        if isinstance(message, AIMessage) and message.tool_calls
    )
    prompt_chars += len(json.dumps(call.tools, sort_keys=True, default=str))
    input_tokens = estimate_tokens(prompt_chars)
    output_tokens = estimate_tokens(len(text) + sum(len(c.arguments_json) for c in calls))
    return UsageMetadata(
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        total_tokens=input_tokens + output_tokens,
    )


def _text(content: str | list[str | dict[str, Any]]) -> str:
    if isinstance(content, str):
        return content
    return "".join(part if isinstance(part, str) else str(part.get("text", "")) for part in content)
