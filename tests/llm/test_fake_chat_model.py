"""The scripted LangChain chat model: tool binding, streaming, and an agent loop."""

from __future__ import annotations

import asyncio
from typing import Any, cast

import pytest
from langchain.agents import create_agent
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    HumanMessage,
    ToolMessage,
)
from langchain_core.runnables import Runnable
from langchain_core.tools import tool

from tests.llm.fake_chat_model import (
    ErrorReply,
    ScriptedChatModel,
    ScriptedModelError,
    ScriptedPolicy,
    ScriptedToolCall,
    TextReply,
    ToolCallsReply,
)
from tests.llm.replies import ScriptExhaustedError

looked_up: list[str] = []


@tool
async def lookup_capital(country: str) -> str:
    """Look up the capital city of a country."""
    await asyncio.sleep(0)
    looked_up.append(country)
    return {"France": "Paris", "Norway": "Oslo"}[country]


@pytest.fixture(autouse=True)
def _clear_lookups() -> None:
    looked_up.clear()


def calls_of(message: BaseMessage) -> list[tuple[str, dict[str, Any], str | None]]:
    """The message's parsed tool calls as (name, args, id)."""
    assert isinstance(message, AIMessage)
    return [(call["name"], call["args"], call["id"]) for call in message.tool_calls]


async def stream_chunks(model: Runnable[Any, Any], prompt: str) -> list[AIMessageChunk]:
    """Every chunk `model.astream(prompt)` yields, each checked to be an `AIMessageChunk`."""
    chunks = [chunk async for chunk in model.astream(prompt)]
    assert all(isinstance(chunk, AIMessageChunk) for chunk in chunks)
    return chunks


def answer_from_tool_result(messages: list[BaseMessage], tool_names: list[str]) -> str:
    """A policy step that answers with whatever the last tool returned."""
    assert tool_names == ["lookup_capital"]
    result = messages[-1]
    assert isinstance(result, ToolMessage)
    return f"The capital is {result.content}."


async def test_create_agent_runs_the_tool_loop() -> None:
    script = ScriptedPolicy(ScriptedToolCall("lookup_capital", {"country": "France"}))
    model = ScriptedChatModel(
        policy=lambda messages, tools: (
            script() if script.remaining else answer_from_tool_result(messages, tools)
        )
    )
    agent = create_agent(model, tools=[lookup_capital], system_prompt="Be brief.")

    result = await agent.ainvoke({"messages": [HumanMessage("What is the capital of France?")]})

    assert looked_up == ["France"]
    final = result["messages"][-1]
    assert isinstance(final, AIMessage)
    assert final.content == "The capital is Paris."
    assert final.tool_calls == []
    assert [call.tool_names for call in model.calls] == [["lookup_capital"], ["lookup_capital"]]
    tool_result = model.calls[1].messages[-1]
    assert isinstance(tool_result, ToolMessage)
    assert (tool_result.tool_call_id, tool_result.content) == ("call_1_0", "Paris")
    assert model.calls[0].messages[0].content == "Be brief."


async def test_agent_messages_stream_sees_tokens_and_tool_call_chunks() -> None:
    model = ScriptedChatModel(
        policy=ScriptedPolicy(
            ScriptedToolCall("lookup_capital", {"country": "Norway"}),
            TextReply("Oslo is the capital.", chunk_size=3),
        )
    )
    agent = create_agent(model, tools=[lookup_capital])

    tokens: list[str] = []
    tool_call_names: list[str | None] = []
    async for part in agent.astream(
        {"messages": [HumanMessage("Capital of Norway?")]}, stream_mode="messages"
    ):
        # stream_mode="messages" yields (message, metadata) pairs; the stub types say Any.
        chunk, metadata = cast("tuple[BaseMessage, dict[str, Any]]", part)
        if isinstance(chunk, AIMessageChunk) and metadata["langgraph_node"] == "model":
            tokens.extend([chunk.text] if chunk.text else [])
            tool_call_names.extend(tc["name"] for tc in chunk.tool_call_chunks)

    assert looked_up == ["Norway"]
    assert tokens == ["Osl", "o i", "s t", "he ", "cap", "ita", "l."]
    assert tool_call_names[0] == "lookup_capital"
    assert len(tool_call_names) > 2  # the name, then the arguments in several pieces


async def test_astream_splits_tool_calls_into_indexed_chunks() -> None:
    model = ScriptedChatModel(
        policy=ScriptedPolicy(
            ToolCallsReply(
                (
                    ScriptedToolCall("lookup_capital", {"country": "France"}),
                    ScriptedToolCall("lookup_capital", {"country": "Norway"}, id="mine"),
                ),
                text="Two lookups.",
            )
        ),
        chunk_size=5,
    )
    bound = model.bind_tools([lookup_capital])

    chunks = await stream_chunks(bound, "Capitals?")

    tool_chunks = [tc for chunk in chunks for tc in chunk.tool_call_chunks]
    heads = [tc for tc in tool_chunks if tc["name"] is not None]
    assert [(tc["name"], tc["id"], tc["index"], tc["args"]) for tc in heads] == [
        ("lookup_capital", "call_1_0", 0, ""),
        ("lookup_capital", "mine", 1, ""),
    ]
    tails = [tc for tc in tool_chunks if tc["name"] is None]
    assert all(tc["id"] is None and tc["index"] in {0, 1} for tc in tails)
    assert "".join(tc["args"] or "" for tc in tails if tc["index"] == 0) == '{"country": "France"}'
    assert len([tc for tc in tails if tc["index"] == 0]) > 1
    assert [chunk.text for chunk in chunks if chunk.text] == ["Two l", "ookup", "s."]

    message = chunks[0]
    for chunk in chunks[1:]:
        message = message + chunk
    assert message.text == "Two lookups."
    assert calls_of(message) == [
        ("lookup_capital", {"country": "France"}, "call_1_0"),
        ("lookup_capital", {"country": "Norway"}, "mine"),
    ]
    assert chunks[-1].chunk_position == "last"
    assert chunks[-1].usage_metadata is not None
    assert message.usage_metadata == chunks[-1].usage_metadata
    assert message.response_metadata["finish_reason"] == "tool_calls"
    assert message.response_metadata["model_provider"] == "scripted"
    assert model.calls[0].tools[0]["function"]["name"] == "lookup_capital"
    assert "country" in model.calls[0].tools[0]["function"]["parameters"]["properties"]


async def test_ainvoke_and_invoke_answer_in_order() -> None:
    model = ScriptedChatModel(
        policy=ScriptedPolicy("first", ScriptedToolCall("lookup_capital", '{"country": '))
    )

    first = await model.ainvoke("Hi")
    broken = model.invoke("Again")

    assert first.content == "first"
    assert first.usage_metadata is not None
    assert first.usage_metadata["output_tokens"] == 2  # "first": 5 characters / 4, rounded up
    assert first.response_metadata["finish_reason"] == "stop"
    assert isinstance(broken, AIMessage)
    assert broken.tool_calls == []
    assert [(c["name"], c["args"]) for c in broken.invalid_tool_calls] == [
        ("lookup_capital", '{"country": ')
    ]


async def test_async_policy_works_on_the_async_paths_only() -> None:
    async def policy(messages: list[BaseMessage], tool_names: list[str]) -> str:
        await asyncio.sleep(0)
        return f"echo {messages[-1].text}"

    model = ScriptedChatModel(policy=policy)

    assert (await model.ainvoke("one")).content == "echo one"
    streamed = [chunk.text async for chunk in model.astream("two")]
    assert "".join(streamed) == "echo two"
    with pytest.raises(TypeError, match="async API"):
        model.invoke("three")


async def test_error_reply_and_exhausted_script_raise() -> None:
    model = ScriptedChatModel(policy=ScriptedPolicy(ErrorReply(429, "slow down")))

    with pytest.raises(ScriptedModelError, match="429") as error:
        await model.ainvoke("Hi")
    assert error.value.status == 429
    with pytest.raises(ScriptExhaustedError, match="called 2 times"):
        await model.ainvoke("Hi")


def test_reports_its_provider_for_langsmith_and_deepagents() -> None:
    default = ScriptedChatModel(policy=ScriptedPolicy())
    like_litellm = ScriptedChatModel(policy=ScriptedPolicy(), provider="litellm", model="m")

    assert default._get_ls_params()["ls_provider"] == "scripted"
    assert like_litellm._get_ls_params()["ls_provider"] == "litellm"
    assert like_litellm._get_ls_params()["ls_model_name"] == "m"
    assert default._llm_type == "scripted-chat"
