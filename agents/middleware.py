"""Middleware the supervisors and sub-agents share: per-turn prompt facts, bounded history."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from langchain.agents.middleware import (
    AgentMiddleware,
    AgentState,
    ModelRequest,
    after_agent,
    before_agent,
    dynamic_prompt,
)
from langchain_core.messages import HumanMessage, RemoveMessage
from langgraph.runtime import Runtime

from agents.prompts import memory_fact, scope_fact, turn_facts
from tools.context import current_turn_context


@dataclass(frozen=True, slots=True)
class FloatingScope:
    """The item the floating assistant is open on (the graph's runtime context)."""

    type: str
    id: str | None = None


def with_turn_facts(base_prompt: str, *, with_memory: bool = False) -> AgentMiddleware:
    """The system prompt plus the current date, time and time zone (and scope, if any).

    The facts come from the turn context the chat layer binds, so one compiled
    graph serves every user and every day. Supervisors (`with_memory`) also get
    what the user's long-term memory recalls for this turn.
    """

    @dynamic_prompt
    def prompt(request: ModelRequest) -> str:
        context = current_turn_context()
        now = context.local_now()
        text = base_prompt + turn_facts(
            now_iso=now.isoformat(timespec="minutes"),
            weekday=now.strftime("%A"),
            timezone=context.timezone,
        )
        scope = request.runtime.context
        if isinstance(scope, FloatingScope):
            text += scope_fact(scope.type, scope.id)
        if with_memory and context.memory:
            text += memory_fact(context.memory)
        return text

    return prompt


def bounded_history(max_messages: int) -> AgentMiddleware:
    """Keep at most `max_messages` of a thread, dropping whole old exchanges.

    Dropping them from the state (not just from the prompt) keeps checkpoints
    small too, so a thread's 200th turn costs about what its 2nd did. The cut
    moves forward to a user message so no tool result loses its call.
    """

    @before_agent
    def drop_old_messages(state: AgentState[Any], runtime: Runtime[Any]) -> dict[str, Any] | None:
        messages = state["messages"]
        if len(messages) <= max_messages:
            return None
        cut = len(messages) - max_messages
        while cut < len(messages) - 1 and not isinstance(messages[cut], HumanMessage):
            cut += 1
        return {"messages": [RemoveMessage(id=str(m.id)) for m in messages[:cut]]}

    return drop_old_messages


@after_agent
def remember_returned_ids(state: AgentState[Any], runtime: Runtime[Any]) -> dict[str, Any] | None:
    """Store the ids this turn's tools returned in the thread (the tag filter's allow-list)."""
    returned = current_turn_context().returned_ids
    if not returned:
        return None
    return {"known_ids": sorted(returned)}
