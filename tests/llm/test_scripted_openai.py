"""The scripted OpenAI-compatible server, driven through the real LiteLLM path."""

from __future__ import annotations

import json
import math
from collections.abc import AsyncIterator
from typing import Any

import httpx
import litellm
import openai
import pytest
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
)
from langchain_core.messages import ToolCall as LCToolCall
from langchain_core.tools import tool
from langchain_litellm import ChatLiteLLM
from litellm.exceptions import BadRequestError, InternalServerError, RateLimitError

from tests.llm.replies import ScriptExhaustedError
from tests.llm.scripted_openai import (
    ChatRequest,
    ErrorReply,
    PolicyFailedError,
    ScriptedLLM,
    ScriptedPolicy,
    ScriptedToolCall,
    TextReply,
    ToolCallsReply,
    hash_embedding,
    scripted_llm,
)

# LiteLLM prints a "Give Feedback / Get Help" banner on every error; the tests expect them.
litellm.suppress_debug_info = True

pytestmark = [
    pytest.mark.integration,  # the scripted server listens on loopback
    # Raised inside litellm and pydantic while they build response objects, not here.
    pytest.mark.filterwarnings("ignore::pydantic.warnings.PydanticDeprecatedSince211"),
    pytest.mark.filterwarnings("ignore:Item 'summary' on TypedDict:UserWarning"),
]


@tool
def get_weather(city: str, days: int = 1) -> str:
    """Forecast the weather in a city for a number of days."""
    return f"sunny in {city} for {days} days"


@tool
def get_time(timezone: str) -> str:
    """Tell the time in a timezone."""
    return f"noon in {timezone}"


@pytest.fixture
async def llm() -> AsyncIterator[ScriptedLLM]:
    """A server with an empty script: each test assigns its own `policy`."""
    async with scripted_llm(ScriptedPolicy()) as server:
        yield server


def chat_model(llm: ScriptedLLM, *, streaming: bool = True, sdk_retries: int = 0) -> ChatLiteLLM:
    """ChatLiteLLM on the scripted server.

    `max_retries` is ChatLiteLLM's own (tenacity) count of attempts; the OpenAI SDK
    under LiteLLM retries on its own (twice by default) unless `max_retries` is also
    passed through to `litellm.acompletion`, which `model_kwargs` does.
    """
    return ChatLiteLLM(
        model="openai/scripted",
        api_base=llm.api_base,
        api_key="test",
        streaming=streaming,
        max_retries=0,
        model_kwargs={"max_retries": sdk_retries},
    )


async def stream_all(model: Any, prompt: Any) -> list[AIMessageChunk]:
    """Every chunk `model.astream(prompt)` yields."""
    return [chunk async for chunk in model.astream(prompt)]


def calls_of(message: BaseMessage) -> list[tuple[str, dict[str, Any], str | None]]:
    """The message's parsed tool calls as (name, args, id)."""
    assert isinstance(message, AIMessage)
    return [(call["name"], call["args"], call["id"]) for call in message.tool_calls]


def joined(chunks: list[AIMessageChunk]) -> AIMessageChunk:
    """The chunks merged the way LangChain merges a stream."""
    total = chunks[0]
    for chunk in chunks[1:]:
        total = total + chunk
    return total


async def test_streamed_text_arrives_in_several_chunks(llm: ScriptedLLM) -> None:
    text = "The quick brown fox jumps over the lazy dog."
    llm.policy = ScriptedPolicy(TextReply(text, chunk_size=5))

    chunks = await stream_all(chat_model(llm), "Tell me something.")

    pieces = [chunk.content for chunk in chunks if chunk.content]
    assert pieces == [text[start : start + 5] for start in range(0, len(text), 5)]
    message = joined(chunks)
    assert message.content == text
    request = llm.last_request
    assert request.stream is True
    assert request.model == "scripted"
    assert [(m.role, m.text) for m in request.messages] == [("user", "Tell me something.")]
    # LiteLLM asks for usage in the stream; the prompt estimate comes back as input tokens.
    assert request.body["stream_options"] == {"include_usage": True}
    assert message.usage_metadata is not None
    assert message.usage_metadata["input_tokens"] == request.prompt_tokens > 0
    assert message.usage_metadata["output_tokens"] == math.ceil(len(text) / 4)


async def test_streamed_tool_call_has_name_and_parsed_args(llm: ScriptedLLM) -> None:
    llm.policy = ScriptedPolicy(ScriptedToolCall("get_weather", {"city": "Paris", "days": 3}))

    chunks = await stream_all(chat_model(llm).bind_tools([get_weather]), "Weather?")

    tool_chunks = [tc for chunk in chunks for tc in chunk.tool_call_chunks]
    assert tool_chunks[0]["name"] == "get_weather"
    assert tool_chunks[0]["id"] == "call_1_0"
    argument_pieces = [tc["args"] for tc in tool_chunks[1:] if tc["args"]]
    assert len(argument_pieces) > 1  # the arguments really arrived split
    message = joined(chunks)
    assert calls_of(message) == [("get_weather", {"city": "Paris", "days": 3}, "call_1_0")]
    assert message.response_metadata["finish_reason"] == "tool_calls"


async def test_text_then_parallel_tool_calls_stream(llm: ScriptedLLM) -> None:
    llm.policy = ScriptedPolicy(
        ToolCallsReply(
            (
                ScriptedToolCall("get_weather", {"city": "Oslo"}, id="w1"),
                ScriptedToolCall("get_time", {"timezone": "CET"}, id="t1"),
            ),
            text="Let me check both.",
        )
    )

    chunks = await stream_all(chat_model(llm).bind_tools([get_weather, get_time]), "Both?")

    message = joined(chunks)
    assert message.content == "Let me check both."
    assert calls_of(message) == [
        ("get_weather", {"city": "Oslo"}, "w1"),
        ("get_time", {"timezone": "CET"}, "t1"),
    ]


async def test_non_streamed_call_returns_a_json_completion(llm: ScriptedLLM) -> None:
    llm.policy = ScriptedPolicy(
        "Plain answer.", ScriptedToolCall("get_weather", {"city": "Rome"}, id="c9")
    )
    model = chat_model(llm, streaming=False)

    answer = await model.ainvoke("Hello")
    with_tool = await model.bind_tools([get_weather]).ainvoke("Weather in Rome?")

    assert answer.content == "Plain answer."
    assert calls_of(with_tool) == [("get_weather", {"city": "Rome"}, "c9")]
    assert [request.stream for request in llm.requests] == [False, False]
    assert answer.usage_metadata is not None
    assert answer.usage_metadata["input_tokens"] == llm.requests[0].prompt_tokens


async def test_bound_tool_schemas_and_conversation_reach_the_server(llm: ScriptedLLM) -> None:
    llm.policy = ScriptedPolicy("It is sunny.")
    conversation = [
        SystemMessage("You are terse."),
        HumanMessage("Weather in Paris?"),
        AIMessage(
            "",
            tool_calls=[LCToolCall(name="get_weather", args={"city": "Paris"}, id="call_a")],
        ),
        ToolMessage("sunny", tool_call_id="call_a", name="get_weather"),
    ]

    await chat_model(llm).bind_tools([get_weather, get_time]).ainvoke(conversation)

    request = llm.last_request
    assert request.tool_names == ["get_weather", "get_time"]
    weather = request.tool("get_weather")
    assert weather.description == "Forecast the weather in a city for a number of days."
    assert set(weather.parameters["properties"]) == {"city", "days"}
    assert weather.parameters["required"] == ["city"]
    assert request.system_prompt == "You are terse."
    assert [message.role for message in request.messages] == ["system", "user", "assistant", "tool"]
    (call,) = request.messages[2].tool_calls
    assert (call.id, call.name, call.arguments) == ("call_a", "get_weather", {"city": "Paris"})
    assert request.messages[3].tool_call_id == "call_a"
    assert request.messages[3].text == "sunny"


async def test_prompt_tokens_grow_with_the_prompt_and_the_tools(llm: ScriptedLLM) -> None:
    llm.policy = ScriptedPolicy("a", "b", "c")
    model = chat_model(llm)

    await model.ainvoke("Hi")
    await model.ainvoke("Hi " * 100)
    await model.bind_tools([get_weather, get_time]).ainvoke("Hi")

    short, long, with_tools = llm.prompt_tokens
    assert short < long
    assert short < with_tools
    assert long - short == pytest.approx(300 / 4, abs=2)


async def test_async_policy_sees_the_request_and_can_be_swapped(llm: ScriptedLLM) -> None:
    async def echo(request: ChatRequest) -> str:
        return f"You said: {request.last_message.text}"

    llm.policy = echo
    first = await chat_model(llm).ainvoke("ping")
    llm.policy = ScriptedPolicy("swapped")
    second = await chat_model(llm).ainvoke("ping")

    assert (first.content, second.content) == ("You said: ping", "swapped")


async def test_scripted_500_surfaces_as_an_exception(llm: ScriptedLLM) -> None:
    llm.policy = ScriptedPolicy(ErrorReply(500, "upstream exploded"))

    with pytest.raises(InternalServerError, match="upstream exploded"):
        await chat_model(llm).ainvoke("Hi")

    assert len(llm.requests) == 1  # no retry once retries are off


async def test_scripted_429_surfaces_as_a_rate_limit_error(llm: ScriptedLLM) -> None:
    llm.policy = ScriptedPolicy(ErrorReply(429, "slow down"))

    with pytest.raises(RateLimitError, match="slow down"):
        await chat_model(llm).ainvoke("Hi")


async def test_sdk_retry_recovers_from_a_500(llm: ScriptedLLM) -> None:
    # retry-after-ms keeps the OpenAI SDK's back-off to a millisecond.
    llm.policy = ScriptedPolicy(ErrorReply(500, headers={"retry-after-ms": "1"}), "recovered")

    answer = await chat_model(llm, sdk_retries=1).ainvoke("Hi")

    assert answer.content == "recovered"
    assert len(llm.requests) == 2


async def test_exhausted_script_fails_the_call_and_the_block() -> None:
    async def overrun_the_script() -> None:
        async with scripted_llm(ScriptedPolicy("only one")) as llm:
            model = chat_model(llm)
            await model.ainvoke("first")
            # 400, so the call fails at once instead of being retried.
            with pytest.raises(BadRequestError, match="ScriptExhaustedError"):
                await model.ainvoke("second")

    with pytest.raises(PolicyFailedError) as failure:
        await overrun_the_script()

    assert isinstance(failure.value.__cause__, ScriptExhaustedError)


async def test_embeddings_are_deterministic_unit_vectors(llm: ScriptedLLM) -> None:
    async def embed(texts: list[str], **kwargs: Any) -> list[list[float]]:
        response = await litellm.aembedding(
            model="openai/text-embedding-3-small",
            api_base=llm.api_base,
            api_key="x",
            input=texts,
            **kwargs,
        )
        return [list(item["embedding"]) for item in response.data]

    first = await embed(["a", "b"])
    again = await embed(["a", "b"])
    wide = await embed(["a"], dimensions=16)

    assert first == again == [hash_embedding("a", 8), hash_embedding("b", 8)]
    assert first[0] != first[1]
    assert [len(vector) for vector in first] == [8, 8]
    assert math.fsum(value * value for value in first[0]) == pytest.approx(1.0, abs=1e-6)
    assert wide == [hash_embedding("a", 16)]
    assert llm.embedding_requests[0].inputs == ("a", "b")
    assert llm.embedding_requests[2].dimensions == 16


async def test_embeddings_in_base64_decode_to_the_same_vectors(llm: ScriptedLLM) -> None:
    # The OpenAI SDK asks for base64 unless told otherwise.
    async with openai.AsyncOpenAI(base_url=llm.api_base, api_key="x", max_retries=0) as client:
        response = await client.embeddings.create(model="text-embedding-3-small", input=["a"])

    assert llm.embedding_requests[0].encoding_format == "base64"
    assert response.data[0].embedding == hash_embedding("a", 8)


async def test_sse_wire_format(llm: ScriptedLLM) -> None:
    llm.policy = ScriptedPolicy(
        ScriptedToolCall("get_time", {"timezone": "UTC"}, id="t"), "hi", "hi"
    )
    body: dict[str, Any] = {
        "model": "scripted",
        "messages": [{"role": "user", "content": "x"}],
        "stream": True,
    }

    async def events(request_body: dict[str, Any]) -> list[str]:
        async with (
            httpx.AsyncClient(base_url=llm.api_base) as client,
            client.stream("POST", "/chat/completions", json=request_body) as response,
        ):
            assert response.headers["content-type"].startswith("text/event-stream")
            return [line async for line in response.aiter_lines() if line]

    with_tool = await events(body)
    without_usage = await events(body)
    with_usage = await events({**body, "stream_options": {"include_usage": True}})

    assert all(line.startswith("data: ") for line in with_tool)
    assert with_tool[-1] == "data: [DONE]"
    payloads = [json.loads(line.removeprefix("data: ")) for line in with_tool[:-1]]
    first_call = payloads[1]["choices"][0]["delta"]["tool_calls"][0]
    assert first_call == {
        "index": 0,
        "id": "t",
        "type": "function",
        "function": {"name": "get_time", "arguments": ""},
    }
    assert payloads[-1]["choices"][0]["finish_reason"] == "tool_calls"
    assert "usage" not in payloads[-1]
    assert not any('"usage"' in line for line in without_usage)
    usage = json.loads(with_usage[-2].removeprefix("data: "))
    assert usage["choices"] == []
    assert usage["usage"]["prompt_tokens"] == llm.last_request.prompt_tokens
