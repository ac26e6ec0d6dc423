"""No tool raises into the graph: desktop failures and bad arguments come back as text."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from langchain_core.messages import ToolMessage

from protocol.errors import DeviceDisconnectedError
from protocol.frames import ToolCall
from tests.tools.fake_desktop import StoreDesktop, run
from tools import ALL_DOMAIN_TOOLS
from tools._client import domain_tool
from tools.tasks import create_task, list_tasks, update_task

# The smallest call of each tool that reaches the desktop.
MINIMAL_CALLS: dict[str, dict[str, Any]] = {
    "list_tasks": {},
    "create_task": {"title": "Invoice"},
    "update_task": {"task_id": "t1", "status": "done"},
    "delete_task": {"task_id": "t1"},
    "list_tasks_due_today": {},
    "list_task_comments": {"task_id": "t1"},
    "add_task_comment": {"task_id": "t1", "author": "Ana", "content": "Done"},
    "delete_task_comment": {"comment_id": "c1"},
    "list_projects": {},
    "list_all_projects": {},
    "get_project": {"project_id": "p1"},
    "create_project": {"name": "Website"},
    "update_project": {"project_id": "p1", "status": "archived"},
    "delete_project": {"project_id": "p1"},
    "list_timelines": {},
    "create_timeline": {"project_id": "p1", "title": "Launch"},
    "update_timeline": {"timeline_id": "m1", "title": "Go-live"},
    "delete_timeline": {"timeline_id": "m1"},
    "list_notes": {},
    "get_note": {"note_id": "n1"},
    "create_note": {"title": "Kickoff"},
    "update_note": {"note_id": "n1", "title": "Kick-off"},
    "delete_note": {"note_id": "n1"},
}
TOOLS_BY_NAME = {tool.name: tool for tool in ALL_DOMAIN_TOOLS}


def test_every_tool_has_a_minimal_call() -> None:
    assert MINIMAL_CALLS.keys() == TOOLS_BY_NAME.keys()


@pytest.mark.parametrize("name", MINIMAL_CALLS)
async def test_a_desktop_error_becomes_the_answer_of_every_tool(
    desktop: StoreDesktop, name: str
) -> None:
    desktop.answer = lambda call: {"error": "database is locked"}

    text = await run(TOOLS_BY_NAME[name], **MINIMAL_CALLS[name])

    assert text == "Error: database is locked"
    assert len(desktop.sent()) == 1


@pytest.mark.parametrize("name", MINIMAL_CALLS)
async def test_every_tool_says_when_the_desktop_is_offline(name: str) -> None:
    text = await run(TOOLS_BY_NAME[name], **MINIMAL_CALLS[name])

    assert text == (
        "Error: The desktop app is not connected, so the user's data cannot be reached."
    )


async def test_an_unanswered_call_times_out_as_text_and_leaves_nothing_pending() -> None:
    desktop = StoreDesktop()
    desktop.answer = lambda call: None

    with desktop.connected(timeout_s=0.05):
        text = await run(list_tasks)

    assert text == "Error: The desktop app did not answer within 0.05 seconds."
    assert len(desktop.link.protocol.pending) == 0


async def test_a_disconnect_during_the_call_becomes_text(desktop: StoreDesktop) -> None:
    sent = asyncio.Event()

    def hold(call: ToolCall) -> None:
        sent.set()  # and leave the call unanswered

    desktop.answer = hold
    call = asyncio.create_task(run(list_tasks))
    await asyncio.wait_for(sent.wait(), 2)

    desktop.link.fail_all(DeviceDisconnectedError())

    assert await call == "Error: The desktop app disconnected before answering."


async def test_invalid_arguments_are_explained_without_calling_the_desktop(
    desktop: StoreDesktop,
) -> None:
    text = await run(update_task, task_id="t1", status="finished", priority="urgent")

    assert text == (
        "Error: invalid arguments: status: Input should be 'todo', 'in_progress' or 'done';"
        " priority: Input should be 'high', 'medium' or 'low'"
    )
    assert desktop.sent() == []


async def test_the_graph_gets_a_tool_message_marked_as_error(desktop: StoreDesktop) -> None:
    desktop.answer = lambda call: {"error": "database is locked"}
    tool_call = {"type": "tool_call", "id": "call-1", "name": "list_tasks", "args": {}}

    failed = await list_tasks.ainvoke(tool_call)
    desktop.answer = lambda call: {"rows": []}
    answered = await list_tasks.ainvoke(tool_call)

    assert isinstance(failed, ToolMessage)
    assert (failed.status, failed.content, failed.tool_call_id) == (
        "error",
        "Error: database is locked",
        "call-1",
    )
    assert isinstance(answered, ToolMessage)
    assert (answered.status, answered.content) == ("success", "No tasks found.")


def test_a_tool_without_a_docstring_is_refused() -> None:
    async def undocumented() -> str:
        return ""

    with pytest.raises(TypeError, match="undocumented needs a docstring"):
        domain_tool(undocumented)


async def test_a_write_the_desktop_does_not_echo_is_worded_not_raised(
    desktop: StoreDesktop,
) -> None:
    desktop.answer = lambda call: {"row": None}

    created = await run(create_task, title="Invoice")
    updated = await run(update_task, task_id="t1", status="done")

    assert created == "Created the task, but the desktop app did not return its id."
    assert updated == "No task with id t1 exists."


async def test_malformed_stored_values_are_shown_as_they_are(desktop: StoreDesktop) -> None:
    odd_task = {
        "id": "t1",
        "title": "Invoice",
        "status": "todo",
        "priority": "low",
        "assignee": "Ana, Ben",  # not the JSON array the desktop should store
        "dueDate": "tomorrow",  # not Unix ms
    }
    desktop.answer = lambda call: {"rows": [odd_task]}

    text = await run(list_tasks)

    assert text == (
        "1 task found:\n- [todo] Invoice (id t1, due tomorrow, priority low, assigned to Ana, Ben)"
    )
