"""What a scripted model answers: the reply vocabulary shared by both test doubles.

`tests.llm.scripted_openai` (an OpenAI-compatible HTTP server) and
`tests.llm.fake_chat_model` (an in-process LangChain chat model) both ask a *policy*
for each answer. A policy returns a `Reply`:

- `TextReply`: plain text, streamed in several chunks;
- `ToolCallsReply`: one or more `ScriptedToolCall`s, optionally after some text;
- `ErrorReply`: an HTTP error status (the fake chat model raises `ScriptedModelError`).

Anywhere a reply is expected a `ReplyLike` is accepted too: a bare `str` stands for a
`TextReply`, a bare `ScriptedToolCall` for a `ToolCallsReply` with that one call.
`ScriptedPolicy` answers from a queue of such replies, in order.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeAlias

DEFAULT_CHUNK_SIZE = 4
"""Characters per streamed text or tool-argument piece unless a reply says otherwise."""


@dataclass(frozen=True)
class TextReply:
    """Answer with text.

    Streamed answers split `text` into pieces of `chunk_size` characters (the model's
    or server's default when `None`), so consumers see several chunks. With `cut`,
    the stream ends after the text with no finish reason and no `[DONE]`, as when
    a provider's connection drops mid-answer.
    """

    text: str
    chunk_size: int | None = None
    cut: bool = False


@dataclass(frozen=True)
class ScriptedToolCall:
    """One tool call the model makes.

    `arguments` is normally a mapping, sent as its JSON encoding. A `str` is sent
    verbatim, which lets a test script malformed arguments (say `'{"city": '`).
    `id` defaults to a generated `call_<request>_<index>`.
    """

    name: str
    arguments: Mapping[str, Any] | str = field(default_factory=dict)
    id: str | None = None

    @property
    def arguments_json(self) -> str:
        """The arguments as the JSON string a model emits."""
        if isinstance(self.arguments, str):
            return self.arguments
        return json.dumps(dict(self.arguments), ensure_ascii=False)


@dataclass(frozen=True)
class ToolCallsReply:
    """Answer with tool calls (parallel when more than one), after optional `text`."""

    calls: tuple[ScriptedToolCall, ...]
    text: str = ""
    chunk_size: int | None = None

    def __post_init__(self) -> None:
        """Refuse an empty call list: that would be a `TextReply`."""
        if not self.calls:
            msg = "ToolCallsReply needs at least one call; use TextReply for text only"
            raise ValueError(msg)


@dataclass(frozen=True)
class ErrorReply:
    """Fail the request with an HTTP `status` (500, 429, 400, ...).

    The server answers with an OpenAI-style error body and `headers` (for instance
    `{"retry-after": "0"}` on a 429); the fake chat model raises `ScriptedModelError`.
    """

    status: int = 500
    message: str = "scripted error"
    headers: Mapping[str, str] = field(default_factory=dict)


Reply: TypeAlias = TextReply | ToolCallsReply | ErrorReply
"""One scripted answer."""

ReplyLike: TypeAlias = Reply | str | ScriptedToolCall
"""A `Reply`, or the shorthand `str` (text) or `ScriptedToolCall` (one call)."""


class ScriptedModelError(Exception):
    """Raised by the fake chat model for an `ErrorReply` (it has no HTTP to fail)."""

    def __init__(self, reply: ErrorReply) -> None:
        """Keep the reply; the message names its status."""
        super().__init__(f"scripted model error {reply.status}: {reply.message}")
        self.reply = reply
        self.status = reply.status


class ScriptExhaustedError(AssertionError):
    """The model was asked for more replies than the script holds.

    An `AssertionError`, since it means the code under test called the model more
    often than the test expected.
    """


def as_reply(value: ReplyLike) -> Reply:
    """Expand the `ReplyLike` shorthands into a `Reply`."""
    if isinstance(value, str):
        return TextReply(value)
    if isinstance(value, ScriptedToolCall):
        return ToolCallsReply((value,))
    return value


def numbered_calls(reply: TextReply | ToolCallsReply, number: int) -> list[ScriptedToolCall]:
    """The reply's tool calls, each without an `id` given `call_<number>_<index>`."""
    if isinstance(reply, TextReply):
        return []
    return [
        call
        if call.id is not None
        else ScriptedToolCall(call.name, call.arguments, id=f"call_{number}_{index}")
        for index, call in enumerate(reply.calls)
    ]


def split_pieces(text: str, size: int, *, at_least: int = 1) -> list[str]:
    """Cut `text` into pieces of `size` characters, and into `at_least` pieces if it can.

    An empty `text` gives no piece. `at_least` lets tool arguments always arrive in
    several deltas however large the chunk size, so their reassembly is exercised.
    """
    if size < 1:
        msg = f"chunk size must be positive, not {size}"
        raise ValueError(msg)
    if not text:
        return []
    size = min(size, max(1, -(-len(text) // at_least)))
    return [text[start : start + size] for start in range(0, len(text), size)]


def estimate_tokens(characters: int) -> int:
    """A rough token count: one token per four characters, rounded up."""
    return -(-characters // 4)


class ScriptedPolicy:
    """A policy that answers from a queue of replies, one per model call, in order.

    Usable as the policy of both the scripted server (called with a `ChatRequest`)
    and the fake chat model (called with the messages and tool names): it ignores
    what it is called with. Raises `ScriptExhaustedError` once the queue is empty.

        policy = ScriptedPolicy(ScriptedToolCall("get_weather", {"city": "Paris"}),
                                "It is sunny in Paris.")
    """

    def __init__(self, *replies: ReplyLike) -> None:
        """Queue `replies`; more can be added with `add`."""
        self._queue: deque[Reply] = deque(as_reply(reply) for reply in replies)
        self.served = 0
        """How many replies have been handed out."""

    def add(self, *replies: ReplyLike) -> None:
        """Append replies to the end of the queue."""
        self._queue.extend(as_reply(reply) for reply in replies)

    def extend(self, replies: Iterable[ReplyLike]) -> None:
        """Append every reply of `replies` to the end of the queue."""
        self.add(*replies)

    @property
    def remaining(self) -> int:
        """How many replies are still queued."""
        return len(self._queue)

    def __call__(self, *_request: object) -> Reply:
        """Hand out the next reply, whatever the request."""
        if not self._queue:
            msg = (
                f"the scripted model was called {self.served + 1} times, "
                f"but only {self.served} replies were scripted"
            )
            raise ScriptExhaustedError(msg)
        self.served += 1
        return self._queue.popleft()
