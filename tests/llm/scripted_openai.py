"""A scripted OpenAI-compatible chat-completions server on loopback.

Tests drive the real LiteLLM path against it:

    async with scripted_llm(ScriptedPolicy("Hello there!")) as llm:
        model = ChatLiteLLM(model="openai/scripted", api_base=llm.api_base,
                            api_key="test", streaming=True)
        ...
        assert llm.requests[0].messages[-1].text == "Hi"

Endpoints: `POST /v1/chat/completions` (JSON, or SSE when `stream` is true: content
pieces, streamed tool-call deltas, a `finish_reason` chunk, a usage chunk when
`stream_options.include_usage`, then `data: [DONE]`) and `POST /v1/embeddings`
(deterministic unit vectors, `dimensions` long, 8 by default).

Each chat request is parsed into a `ChatRequest`, recorded in `ScriptedLLM.requests`,
and handed to the policy, which returns a `ReplyLike` (see `tests.llm.replies`) or an
awaitable of one. `usage.prompt_tokens` is a rough estimate, a quarter of the
characters of the JSON-encoded messages and tools, so benchmarks can compare prompt
sizes; the same number is on `ChatRequest.prompt_tokens`.

The server runs with uvicorn inside the current event loop
(`tests.loopback.serve_on_loopback`), on a socket bound before start-up.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import inspect
import itertools
import json
import math
import struct
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, TypeAlias

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from tests.llm.replies import (
    DEFAULT_CHUNK_SIZE,
    ErrorReply,
    Reply,
    ReplyLike,
    ScriptedPolicy,
    ScriptedToolCall,
    TextReply,
    ToolCallsReply,
    as_reply,
    estimate_tokens,
    numbered_calls,
    split_pieces,
)
from tests.loopback import serve_on_loopback

__all__ = [
    "DEFAULT_EMBEDDING_DIMENSIONS",
    "ChatMessage",
    "ChatPolicy",
    "ChatRequest",
    "ChatToolCall",
    "EmbeddingRequest",
    "ErrorReply",
    "PolicyFailedError",
    "Reply",
    "ReplyLike",
    "ScriptedLLM",
    "ScriptedPolicy",
    "ScriptedToolCall",
    "TextReply",
    "ToolCallsReply",
    "ToolSpec",
    "hash_embedding",
    "scripted_llm",
]

DEFAULT_EMBEDDING_DIMENSIONS = 8


@dataclass(frozen=True)
class ChatToolCall:
    """A tool call inside an assistant message of the prompt (an earlier turn)."""

    id: str
    name: str
    arguments_json: str

    @property
    def arguments(self) -> Any:
        """The decoded arguments (raises `json.JSONDecodeError` if they are not JSON)."""
        return json.loads(self.arguments_json)


@dataclass(frozen=True)
class ChatMessage:
    """One message of the prompt, as the client sent it."""

    role: str
    content: str | list[dict[str, Any]] | None
    tool_calls: tuple[ChatToolCall, ...] = ()
    tool_call_id: str | None = None
    name: str | None = None

    @property
    def text(self) -> str:
        """The content as text: a string as is, the text parts of a list joined."""
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(
            str(part.get("text", "")) for part in self.content if part.get("type") == "text"
        )


@dataclass(frozen=True)
class ToolSpec:
    """A function tool offered to the model."""

    name: str
    description: str
    parameters: dict[str, Any]


@dataclass(frozen=True)
class ChatRequest:
    """One parsed `POST /v1/chat/completions` request."""

    model: str
    messages: tuple[ChatMessage, ...]
    tools: tuple[ToolSpec, ...]
    stream: bool
    prompt_tokens: int
    """Rough estimate: characters of the JSON-encoded messages and tools, divided by 4."""
    body: dict[str, Any] = field(repr=False)
    """The raw JSON body, for anything not parsed above (`tool_choice`, `temperature`...)."""

    @property
    def tool_names(self) -> list[str]:
        """Names of the offered tools, in order."""
        return [tool.name for tool in self.tools]

    def tool(self, name: str) -> ToolSpec:
        """The offered tool called `name` (`KeyError` if there is none)."""
        for tool in self.tools:
            if tool.name == name:
                return tool
        raise KeyError(name)

    @property
    def last_message(self) -> ChatMessage:
        """The last message of the prompt."""
        return self.messages[-1]

    @property
    def system_prompt(self) -> str:
        """The text of the system (or developer) messages, joined by blank lines."""
        return "\n\n".join(
            message.text for message in self.messages if message.role in {"system", "developer"}
        )

    @classmethod
    def parse(cls, body: Mapping[str, Any]) -> ChatRequest:
        """Parse a chat-completions JSON body."""
        messages = tuple(_parse_message(message) for message in body.get("messages") or [])
        tools = tuple(
            ToolSpec(
                name=str(tool["function"]["name"]),
                description=str(tool["function"].get("description", "")),
                parameters=dict(tool["function"].get("parameters") or {}),
            )
            for tool in body.get("tools") or []
            if tool.get("type", "function") == "function"
        )
        return cls(
            model=str(body.get("model", "")),
            messages=messages,
            tools=tools,
            stream=bool(body.get("stream", False)),
            prompt_tokens=estimate_tokens(
                len(_compact_json(body.get("messages") or []))
                + len(_compact_json(body.get("tools") or []))
            ),
            body=dict(body),
        )


def _parse_message(raw: Mapping[str, Any]) -> ChatMessage:
    content = raw.get("content")
    return ChatMessage(
        role=str(raw.get("role", "")),
        content=content if content is None or isinstance(content, str) else list(content),
        tool_calls=tuple(
            ChatToolCall(
                id=str(call.get("id", "")),
                name=str(call["function"]["name"]),
                arguments_json=str(call["function"].get("arguments") or ""),
            )
            for call in raw.get("tool_calls") or []
        ),
        tool_call_id=raw.get("tool_call_id"),
        name=raw.get("name"),
    )


def _compact_json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True)


@dataclass(frozen=True)
class EmbeddingRequest:
    """One parsed `POST /v1/embeddings` request."""

    model: str
    inputs: tuple[str, ...]
    dimensions: int
    encoding_format: str


ChatPolicy: TypeAlias = Callable[[ChatRequest], ReplyLike | Awaitable[ReplyLike]]
"""Decides the answer to a chat request; may be async (to wait on an event, say)."""

Embedder: TypeAlias = Callable[[str, int], Sequence[float]]
"""Maps a text and a dimension count to a vector."""


def hash_embedding(text: str, dimensions: int = DEFAULT_EMBEDDING_DIMENSIONS) -> list[float]:
    """A deterministic unit vector for `text`, seeded by SHA-256 (same in every process).

    Values are rounded to float32, as the server sends them in base64 float32 when
    asked, so both encodings decode to exactly these numbers.
    """
    raw = [
        int.from_bytes(hashlib.sha256(f"{index}:{text}".encode()).digest()[:8], "big") / 2**63 - 1.0
        for index in range(dimensions)
    ]
    norm = math.sqrt(sum(value * value for value in raw)) or 1.0
    unit = [value / norm for value in raw]
    return list(struct.unpack(f"<{dimensions}f", struct.pack(f"<{dimensions}f", *unit)))


class PolicyFailedError(AssertionError):
    """The policy raised while the server was answering; the first error is the cause."""


class ScriptedLLM:
    """The scripted server's state: the policy, the settings and what was received.

    Attributes are plain and may be changed while serving: assign `policy` to swap
    the script, `chunk_size` to change how text is cut, `chunk_delay` to pause between
    streamed chunks (seconds, to simulate a slow model), `embedder` to change vectors,
    `floats_only` to answer embeddings in JSON numbers whatever was asked (as providers
    without `encoding_format` do).
    """

    def __init__(
        self,
        policy: ChatPolicy,
        *,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        chunk_delay: float = 0.0,
        embedder: Embedder = hash_embedding,
    ) -> None:
        """Prepare the app; `scripted_llm` serves it and sets `port`."""
        self.policy = policy
        self.chunk_size = chunk_size
        self.chunk_delay = chunk_delay
        self.embedder = embedder
        self.floats_only = False
        self.port = 0
        self.requests: list[ChatRequest] = []
        """Every chat request received, in order (error replies included)."""
        self.embedding_requests: list[EmbeddingRequest] = []
        """Every embeddings request received, in order."""
        self.policy_errors: list[BaseException] = []
        """Exceptions the policy raised (each answered with HTTP 400 naming it)."""
        self._ids = itertools.count(1)
        self.app = self._create_app()

    @property
    def base_url(self) -> str:
        """`http://127.0.0.1:PORT`."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def api_base(self) -> str:
        """`http://127.0.0.1:PORT/v1`, the `api_base` to give LiteLLM."""
        return f"{self.base_url}/v1"

    @property
    def last_request(self) -> ChatRequest:
        """The latest chat request (`IndexError` if none came)."""
        return self.requests[-1]

    @property
    def prompt_tokens(self) -> list[int]:
        """The estimated prompt tokens of every chat request, in order."""
        return [request.prompt_tokens for request in self.requests]

    def _create_app(self) -> FastAPI:
        app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)

        @app.post("/v1/chat/completions")
        async def chat_completions(request: Request) -> Response:
            return await self._chat(await request.json())

        @app.post("/v1/embeddings")
        async def embeddings(request: Request) -> Response:
            return self._embeddings(await request.json())

        return app

    async def _chat(self, body: dict[str, Any]) -> Response:
        request = ChatRequest.parse(body)
        self.requests.append(request)
        number = next(self._ids)
        try:
            decided = self.policy(request)
            reply = as_reply(await decided if inspect.isawaitable(decided) else decided)
        except Exception as exc:  # any policy failure becomes an HTTP answer, and is kept
            self.policy_errors.append(exc)
            # 400: clients do not retry it, so a broken script fails fast.
            reply = ErrorReply(400, f"scripted policy failed: {exc!r}")
        if isinstance(reply, ErrorReply):
            return _error_response(reply)
        completion_id = f"chatcmpl-scripted-{number}"
        calls = numbered_calls(reply, number)
        text = reply.text
        chunk_size = reply.chunk_size or self.chunk_size
        completion_tokens = estimate_tokens(
            len(text) + sum(len(call.arguments_json) for call in calls)
        )
        usage = {
            "prompt_tokens": request.prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": request.prompt_tokens + completion_tokens,
        }
        if not request.stream:
            return JSONResponse(
                _completion(completion_id, request.model, text, calls, usage),
            )
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        events = _stream_events(
            completion_id,
            request.model,
            text,
            calls,
            chunk_size,
            usage if include_usage else None,
            cut=isinstance(reply, TextReply) and reply.cut,
        )
        return StreamingResponse(
            self._paced(events),
            media_type="text/event-stream",
            headers={"cache-control": "no-cache"},
        )

    async def _paced(self, events: list[str]) -> AsyncIterator[str]:
        for event in events:
            if self.chunk_delay > 0:
                await asyncio.sleep(self.chunk_delay)
            yield event

    def _embeddings(self, body: dict[str, Any]) -> Response:
        raw_input = body.get("input", [])
        inputs = raw_input if isinstance(raw_input, list) else [raw_input]
        texts = tuple(item if isinstance(item, str) else _compact_json(item) for item in inputs)
        dimensions = int(body.get("dimensions") or DEFAULT_EMBEDDING_DIMENSIONS)
        encoding_format = str(body.get("encoding_format") or "float")
        self.embedding_requests.append(
            EmbeddingRequest(str(body.get("model", "")), texts, dimensions, encoding_format)
        )
        data: list[dict[str, Any]] = []
        for index, text in enumerate(texts):
            vector = [float(value) for value in self.embedder(text, dimensions)]
            embedding: list[float] | str = vector
            if encoding_format == "base64" and not self.floats_only:
                embedding = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
            data.append({"object": "embedding", "index": index, "embedding": embedding})
        tokens = estimate_tokens(sum(len(text) for text in texts))
        return JSONResponse(
            {
                "object": "list",
                "data": data,
                "model": body.get("model", ""),
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            }
        )


def _error_response(reply: ErrorReply) -> JSONResponse:
    kind = {
        400: "invalid_request_error",
        401: "authentication_error",
        404: "not_found_error",
        429: "rate_limit_exceeded",
    }.get(reply.status, "server_error")
    return JSONResponse(
        {"error": {"message": reply.message, "type": kind, "param": None, "code": None}},
        status_code=reply.status,
        headers=dict(reply.headers),
    )


def _completion(
    completion_id: str,
    model: str,
    text: str,
    calls: list[ScriptedToolCall],
    usage: dict[str, int],
) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": text or None}
    if calls:
        message["tool_calls"] = [
            {
                "id": call.id,
                "type": "function",
                "function": {"name": call.name, "arguments": call.arguments_json},
            }
            for call in calls
        ]
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": message,
                "finish_reason": "tool_calls" if calls else "stop",
            }
        ],
        "usage": usage,
    }


def _stream_events(
    completion_id: str,
    model: str,
    text: str,
    calls: list[ScriptedToolCall],
    chunk_size: int,
    usage: dict[str, int] | None,
    *,
    cut: bool = False,
) -> list[str]:
    """The SSE events of one streamed answer, `data: [DONE]` included (unless `cut`)."""
    created = int(time.time())

    def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
        return {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
        }

    payloads: list[dict[str, Any]] = [chunk({"role": "assistant", "content": ""})]
    payloads.extend(chunk({"content": piece}) for piece in split_pieces(text, chunk_size))
    for index, call in enumerate(calls):
        payloads.append(
            chunk(
                {
                    "tool_calls": [
                        {
                            "index": index,
                            "id": call.id,
                            "type": "function",
                            "function": {"name": call.name, "arguments": ""},
                        }
                    ]
                }
            )
        )
        payloads.extend(
            chunk({"tool_calls": [{"index": index, "function": {"arguments": piece}}]})
            for piece in split_pieces(call.arguments_json, chunk_size, at_least=2)
        )
    if cut:
        return [f"data: {json.dumps(payload, ensure_ascii=False)}\n\n" for payload in payloads]
    payloads.append(chunk({}, "tool_calls" if calls else "stop"))
    if usage is not None:
        payloads.append(
            {
                "id": completion_id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "choices": [],
                "usage": usage,
            }
        )
    events = [f"data: {json.dumps(payload, ensure_ascii=False)}\n\n" for payload in payloads]
    events.append("data: [DONE]\n\n")
    return events


@asynccontextmanager
async def scripted_llm(
    policy: ChatPolicy,
    *,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    chunk_delay: float = 0.0,
    embedder: Embedder = hash_embedding,
    strict: bool = True,
) -> AsyncIterator[ScriptedLLM]:
    """Serve a `ScriptedLLM` on 127.0.0.1 (random port) until the block ends.

    With `strict`, a block that ends normally raises `PolicyFailedError` if the
    policy raised while serving (for instance a `ScriptedPolicy` that ran out of
    replies): code under test may have swallowed the HTTP error it caused.
    """
    llm = ScriptedLLM(policy, chunk_size=chunk_size, chunk_delay=chunk_delay, embedder=embedder)
    async with serve_on_loopback(llm.app) as port:
        llm.port = port
        yield llm
    if strict and llm.policy_errors:
        msg = f"the scripted policy raised {len(llm.policy_errors)} time(s): {llm.policy_errors}"
        raise PolicyFailedError(msg) from llm.policy_errors[0]
