"""A scripted model that behaves like a competent assistant, for end-to-end chat tests.

Each test registers a `Plan` per user message: which sub-agent the supervisor
delegates to, which tool the sub-agent calls with which arguments, and what the
supervisor finally says given the sub-agent's report. The policy answers the
real LiteLLM requests the server makes, telling supervisor from sub-agent by
the tools it is offered.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tests.llm.scripted_openai import ChatRequest, ReplyLike, ScriptedToolCall, TextReply

DELEGATION_PREFIX = "JOB:"
HEX_ID = re.compile(r"\b[0-9a-f]{32}\b")


def ids_in(text: str) -> list[str]:
    return list(dict.fromkeys(HEX_ID.findall(text)))


@dataclass
class Plan:
    agent: str = ""
    tool: str = ""
    args: dict[str, Any] = field(default_factory=dict)
    answer: Callable[[str], str] = lambda report: f"Done. {report}"
    memory: tuple[str, str] | None = None  # the supervisor calls update_core_memory first


class AssistantPolicy:
    def __init__(self) -> None:
        self.plans: dict[str, Plan] = {}

    def plan(self, message: str, **plan: Any) -> None:
        self.plans[message] = Plan(**plan)

    def _plan_for(self, text: str) -> Plan:
        for message, plan in self.plans.items():
            if text.startswith(message):  # REST appends the app's context to the message
                return plan
        return Plan()

    def __call__(self, request: ChatRequest) -> ReplyLike:
        if "task" in request.tool_names:
            return self._supervisor(request)
        return self._subagent(request)

    def _supervisor(self, request: ChatRequest) -> ReplyLike:
        user_text = next(m.text for m in reversed(request.messages) if m.role == "user")
        plan = self._plan_for(user_text)
        last = request.last_message
        if last.role == "user":
            if plan.memory is not None:
                key, value = plan.memory
                return ScriptedToolCall("update_core_memory", {"key": key, "value": value})
            if not plan.agent:
                return TextReply("Hello! How can I help?")
            return ScriptedToolCall(
                "task",
                {"description": DELEGATION_PREFIX + user_text, "subagent_type": plan.agent},
            )
        if last.role == "tool" and last.name == "update_core_memory" and plan.agent:
            return ScriptedToolCall(
                "task",
                {"description": DELEGATION_PREFIX + user_text, "subagent_type": plan.agent},
            )
        return TextReply(plan.answer(last.text))

    def _subagent(self, request: ChatRequest) -> ReplyLike:
        last = request.last_message
        if last.role == "user":
            plan = self._plan_for(last.text.removeprefix(DELEGATION_PREFIX))
            return ScriptedToolCall(plan.tool, plan.args)
        return TextReply(last.text)  # report the tool's answer as it is
