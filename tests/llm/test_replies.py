"""The shared reply vocabulary and the queue policy."""

from __future__ import annotations

import pytest

from tests.llm.replies import (
    ScriptedPolicy,
    ScriptedToolCall,
    ScriptExhaustedError,
    TextReply,
    ToolCallsReply,
    numbered_calls,
    split_pieces,
)


def test_split_pieces_cuts_by_size_and_into_at_least_some_pieces() -> None:
    assert split_pieces("abcdefg", 3) == ["abc", "def", "g"]
    assert split_pieces("abcdef", 100, at_least=2) == ["abc", "def"]
    assert split_pieces("a", 100, at_least=2) == ["a"]
    assert split_pieces("", 3) == []
    with pytest.raises(ValueError, match="positive"):
        split_pieces("abc", 0)


def test_policy_answers_in_order_and_expands_shorthands() -> None:
    call = ScriptedToolCall("f", {"x": 1})
    policy = ScriptedPolicy("hello", call)
    policy.add(TextReply("later"))

    assert policy.remaining == 3
    assert policy("any request") == TextReply("hello")
    assert policy("the messages", ["f"]) == ToolCallsReply((call,))
    assert policy() == TextReply("later")
    assert policy.served == 3
    with pytest.raises(ScriptExhaustedError, match="called 4 times, but only 3 replies"):
        policy()


def test_tool_calls_get_ids_and_json_arguments() -> None:
    reply = ToolCallsReply((ScriptedToolCall("f", {"é": 1}), ScriptedToolCall("g", "{", id="k")))

    calls = numbered_calls(reply, 7)

    assert [(c.id, c.arguments_json) for c in calls] == [("call_7_0", '{"é": 1}'), ("k", "{")]
    assert numbered_calls(TextReply("no calls"), 7) == []
    with pytest.raises(ValueError, match="at least one call"):
        ToolCallsReply(())
