"""The supervisor graphs with a scripted model: routing, prompts, streamed frames, history."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from langchain_core.messages import BaseMessage, HumanMessage, SystemMessage
from langgraph.checkpoint.memory import InMemorySaver

from agents.middleware import FloatingScope
from agents.supervisors import Supervisors, build_supervisors
from app.chat.formatter import TurnStream
from protocol.frames import ServerFrame
from tests.llm.fake_chat_model import ScriptedChatModel
from tests.llm.replies import ReplyLike, ScriptedToolCall, TextReply
from tests.tools.fake_desktop import StoreDesktop
from tools.context import turn_context

Policy = Callable[[list[BaseMessage], list[str]], ReplyLike]


def delegate(agent: str, tool: str, args: dict[str, Any], answer: Callable[[str], str]) -> Policy:
    """Supervisor -> `agent` -> `tool(args)` -> report the tool text -> `answer(report)`."""

    def policy(messages: list[BaseMessage], tool_names: list[str]) -> ReplyLike:
        last = messages[-1]
        if "task" in tool_names:
            if isinstance(last, HumanMessage):
                return ScriptedToolCall("task", {"description": "do it", "subagent_type": agent})
            return TextReply(answer(last.text))
        if isinstance(last, HumanMessage):
            return ScriptedToolCall(tool, args)
        return TextReply("SUBAGENT REPORT: " + last.text)

    return policy


def graphs(
    policy: Policy, *, chunk_size: int = 4, max_messages: int = 40
) -> tuple[Supervisors, ScriptedChatModel]:
    model = ScriptedChatModel(policy=policy, provider="litellm", chunk_size=chunk_size)
    return (
        build_supervisors(
            supervisor_model=model,
            subagent_model=model,
            checkpointer=InMemorySaver(),
            max_messages=max_messages,
        ),
        model,
    )


@pytest.fixture
def desktop() -> Iterator[StoreDesktop]:
    desk = StoreDesktop()
    yield desk
    desk.store.close()


async def run_turn(
    supervisors: Supervisors,
    desktop: StoreDesktop,
    message: str,
    *,
    floating: bool = False,
    thread: str = "t",
    scope: FloatingScope | None = None,
) -> tuple[list[ServerFrame], TurnStream]:
    frames: list[ServerFrame] = []

    async def emit(frame: ServerFrame) -> None:
        frames.append(frame)

    graph = supervisors.floating if floating else supervisors.home
    with desktop.connected(timeout_s=5) as target:
        stream = TurnStream(
            emit=emit, request_id="r1", floating=floating, known_ids=target.returned_ids
        )
        await stream.start()
        async for namespace, mode, data in graph.astream(
            {"messages": [HumanMessage(message)]},
            {"configurable": {"thread_id": thread}},
            context=scope or (FloatingScope("project") if floating else None),
            stream_mode=["messages", "updates"],
            subgraphs=True,
        ):
            await stream.event(tuple(namespace), mode, data)
        await stream.finish()
    return frames, stream


ROUTES = [
    ("task_agent", "list_tasks", {}, "tasks", "tasks"),
    ("project_agent", "list_all_projects", {}, "projects", "projects"),
    ("timeline_agent", "list_timelines", {"project_id": "p1"}, "timelines", "timelines"),
    ("note_agent", "list_notes", {}, "notes", "notes"),
]


@pytest.mark.parametrize(("agent", "tool", "args", "table", "domain"), ROUTES)
async def test_supervisor_routes_to_each_subagent_and_only_its_answer_streams(
    desktop: StoreDesktop, agent: str, tool: str, args: dict[str, Any], table: str, domain: str
) -> None:
    supervisors, model = graphs(delegate(agent, tool, args, lambda report: "All done."))

    frames, stream = await run_turn(supervisors, desktop, "go", floating=True)

    assert [f.type for f in frames][:2] == ["floating_domain", "stream_start"]
    assert frames[0].domain == domain  # type: ignore[union-attr]
    assert [f["table"] for f in desktop.sent()] == [table]
    assert "".join(stream.answer) == "All done."
    assert all("SUBAGENT REPORT" not in getattr(f, "chunk", "") for f in frames)
    # The sub-agent saw only its own tools; the supervisor only task and memory.
    subagent_call = next(c for c in model.calls if "task" not in c.tool_names)
    assert tool in subagent_call.tool_names
    assert "task" not in subagent_call.tool_names
    supervisor_call = model.calls[0]
    assert sorted(supervisor_call.tool_names) == ["task", "update_core_memory"]


async def test_floating_domain_defaults_to_tasks_and_text_waits_for_it(
    desktop: StoreDesktop,
) -> None:
    supervisors, _ = graphs(lambda messages, tools: TextReply("Nothing to look up."))

    frames, _ = await run_turn(supervisors, desktop, "hi", floating=True)

    assert [f.type for f in frames][:2] == ["floating_domain", "stream_start"]
    assert frames[0].domain == "tasks"  # type: ignore[union-attr]
    assert "".join(getattr(f, "chunk", "") for f in frames) == "Nothing to look up."


async def test_entity_tags_keep_only_returned_ids_across_chunk_boundaries(
    desktop: StoreDesktop,
) -> None:
    task = desktop.seed("tasks", title="Invoice")
    invented = "0" * 32
    answer = f"See <task>[{task['id']}, {invented}]</task> and <note>[{invented}]</note>."
    supervisors, _ = graphs(
        delegate("task_agent", "list_tasks", {}, lambda report: answer), chunk_size=3
    )

    frames, _ = await run_turn(supervisors, desktop, "show tasks")

    text = "".join(getattr(f, "chunk", "") for f in frames)
    assert text == f"See <task>[{task['id']}]</task> and ."
    assert sum(1 for f in frames if f.type == "stream_text") >= 3  # streamed, not held to the end


async def test_prompts_carry_the_users_date_time_zone_and_scope(desktop: StoreDesktop) -> None:
    supervisors, model = graphs(delegate("task_agent", "list_tasks_due_today", {}, str))
    now = datetime(2026, 11, 27, 9, 30, tzinfo=ZoneInfo("UTC"))

    with turn_context(timezone="Europe/Berlin", now=now):
        await run_turn(
            supervisors, desktop, "due today?", floating=True, scope=FloatingScope("project", "p42")
        )

    prompts = [
        next(m.text for m in call.messages if isinstance(m, SystemMessage)) for call in model.calls
    ]
    assert all("Friday 2026-11-27T10:30+01:00" in p and "Europe/Berlin" in p for p in prompts)
    assert "looking at project p42" in prompts[0]
    [call] = desktop.sent()
    berlin_midnight = int(
        datetime(2026, 11, 27, tzinfo=ZoneInfo("Europe/Berlin")).timestamp() * 1000
    )
    assert call["filters"]["dueDateFrom"] == berlin_midnight


async def test_history_kept_in_a_thread_is_bounded(desktop: StoreDesktop) -> None:
    supervisors, model = graphs(lambda messages, tools: TextReply("ok"), max_messages=6)

    for n in range(10):
        await run_turn(supervisors, desktop, f"message {n}", thread="long")

    state = await supervisors.home.aget_state({"configurable": {"thread_id": "long"}})
    assert len(state.values["messages"]) <= 6
    last_prompt = [m.text for m in model.calls[-1].messages if isinstance(m, HumanMessage)]
    assert last_prompt[-1] == "message 9"
    assert "message 0" not in last_prompt


async def test_returned_ids_are_kept_in_the_thread(desktop: StoreDesktop) -> None:
    task = desktop.seed("tasks", title="Invoice")
    supervisors, _ = graphs(delegate("task_agent", "list_tasks", {}, lambda r: "ok"))

    await run_turn(supervisors, desktop, "list", thread="ids")

    state = await supervisors.home.aget_state({"configurable": {"thread_id": "ids"}})
    assert state.values["known_ids"] == [f"tasks:{task['id']}"]
