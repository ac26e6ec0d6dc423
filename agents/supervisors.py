"""The Home and Floating supervisors and their four sub-agents, built once at start-up.

Both supervisors are `create_agent` graphs with deepagents' `SubAgentMiddleware`
providing the `task` tool, rather than `create_deep_agent` with its defaults:
the models see only what they need (the supervisor `task` and
`update_core_memory`, each sub-agent its own domain tools) and no filesystem
tools or general-purpose sub-agent, which roughly halves the time and the
prompt tokens of a turn (`benchmarks/turn.py` measures both).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, NotRequired

from deepagents import CompiledSubAgent, SubAgentMiddleware
from deepagents.backends import StateBackend
from deepagents.middleware.patch_tool_calls import PatchToolCallsMiddleware
from langchain.agents import create_agent
from langchain.agents.middleware import AgentState
from langchain_core.language_models import BaseChatModel
from langchain_core.tools import BaseTool
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph.state import CompiledStateGraph

from agents import prompts
from agents.middleware import (
    FloatingScope,
    bounded_history,
    remember_returned_ids,
    with_turn_facts,
)
from protocol.frames import Domain
from tools import NOTE_TOOLS, PROJECT_TOOLS, TASK_TOOLS, TIMELINE_TOOLS
from tools.memory import update_core_memory

TASK_TOOL_DESCRIPTION = """\
Delegate one self-contained job to a specialist and get its short report back. \
The specialist sees only `description`, not the conversation: include every detail \
and id it needs.

{available_agents}"""


@dataclass(frozen=True, slots=True)
class SubAgentSpec:
    name: str
    domain: Domain
    description: str
    prompt: str
    tools: list[BaseTool]


SUBAGENTS = (
    SubAgentSpec(
        "task_agent",
        Domain.TASKS,
        "Lists, creates, updates and deletes tasks and task comments.",
        prompts.TASK_AGENT,
        TASK_TOOLS,
    ),
    SubAgentSpec(
        "project_agent",
        Domain.PROJECTS,
        "Lists, reads, creates, updates, archives and deletes projects.",
        prompts.PROJECT_AGENT,
        PROJECT_TOOLS,
    ),
    SubAgentSpec(
        "timeline_agent",
        Domain.TIMELINES,
        "Lists, creates, updates and deletes project milestones (timelines).",
        prompts.TIMELINE_AGENT,
        TIMELINE_TOOLS,
    ),
    SubAgentSpec(
        "note_agent",
        Domain.NOTES,
        "Lists, reads, creates, updates and deletes Markdown notes.",
        prompts.NOTE_AGENT,
        NOTE_TOOLS,
    ),
)

DOMAIN_OF_SUBAGENT = {spec.name: spec.domain for spec in SUBAGENTS}

Graph = CompiledStateGraph[Any, Any, Any, Any]

MAX_KNOWN_IDS = 2000


def _merge_ids(old: list[str], new: list[str]) -> list[str]:
    merged = list(dict.fromkeys([*old, *new]))
    return merged[-MAX_KNOWN_IDS:]


class SupervisorState(AgentState[Any]):
    """The supervisor's thread state, plus the ids tools returned in the conversation.

    Entity tags in answers may only name these ids; kept in the thread so a
    later turn can still show an item found earlier.
    """

    known_ids: NotRequired[Annotated[list[str], _merge_ids]]


@dataclass(frozen=True, slots=True)
class Supervisors:
    home: Graph
    floating: Graph


def _subagents(model: BaseChatModel) -> list[CompiledSubAgent]:
    # Compiled without a checkpointer: a sub-agent's inner steps are not worth
    # persisting under the parent thread (its report is, in the supervisor's state).
    return [
        CompiledSubAgent(
            name=spec.name,
            description=spec.description,
            runnable=create_agent(
                model,
                spec.tools,
                middleware=[with_turn_facts(spec.prompt)],
                name=spec.name,
                checkpointer=False,
            ),
        )
        for spec in SUBAGENTS
    ]


def _supervisor(
    *,
    model: BaseChatModel,
    subagents: list[CompiledSubAgent],
    prompt: str,
    checkpointer: BaseCheckpointSaver[Any] | None,
    max_messages: int,
    floating: bool,
) -> Graph:
    return create_agent(
        model,
        [update_core_memory],
        middleware=[
            bounded_history(max_messages),
            remember_returned_ids,
            # A cancelled turn can leave a tool call without its result in the
            # thread; this answers it so the next turn's request stays valid.
            PatchToolCallsMiddleware(),
            with_turn_facts(prompt, with_memory=True),
            SubAgentMiddleware(
                backend=StateBackend(),
                subagents=subagents,
                task_description=TASK_TOOL_DESCRIPTION,
                private_state_keys=frozenset({"known_ids"}),
            ),
        ],
        state_schema=SupervisorState,
        context_schema=FloatingScope if floating else None,
        checkpointer=checkpointer,
    )


def build_supervisors(
    *,
    supervisor_model: BaseChatModel,
    subagent_model: BaseChatModel,
    checkpointer: BaseCheckpointSaver[Any] | None,
    max_messages: int,
) -> Supervisors:
    subagents = _subagents(subagent_model)
    common: dict[str, Any] = {
        "model": supervisor_model,
        "subagents": subagents,
        "checkpointer": checkpointer,
        "max_messages": max_messages,
    }
    return Supervisors(
        home=_supervisor(prompt=prompts.HOME_SUPERVISOR, floating=False, **common),
        floating=_supervisor(prompt=prompts.FLOATING_SUPERVISOR, floating=True, **common),
    )
