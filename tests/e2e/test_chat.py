"""Chat end to end: the real server, devclient as the desktop, a scripted model on loopback.

Every model call goes through the real LiteLLM path to the scripted
OpenAI-compatible server; tools round-trip to the devclient's SQLite database.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import text

from app.core.settings import Settings
from devclient.client import DeviceClient
from tests.e2e.assistant_policy import ids_in
from tests.e2e.conftest import Live, UnansweredToolCalls, running
from tests.llm.scripted_openai import ChatRequest, ErrorReply, ReplyLike, TextReply

INVENTED = "f" * 32


WITH_AND_WITHOUT_FALLBACKS = pytest.mark.parametrize(
    "live_settings", [{}, {"llm_fallback_models": ["openai/backup"]}], ids=["model", "router"]
)


def seed(client: DeviceClient, table: str, **data: Any) -> dict[str, Any]:
    row: dict[str, Any] = client.store.execute(action="insert", table=table, data=data)["row"]
    return row


def tagged(tag: str) -> Callable[[str], str]:
    """A supervisor answer that shows the reported items, plus one invented id."""
    return lambda report: f"Here you go: <{tag}>[{','.join([*ids_in(report), INVENTED])}]</{tag}>"


async def test_listing_tasks_streams_the_answer_with_only_real_ids(assistant: Live) -> None:
    client = await assistant.desktop(await assistant.account())
    first = seed(client, "tasks", title="Invoice ACME", priority="high")
    second = seed(client, "tasks", title="Call Bob")
    assistant.policy.plan(
        "list my tasks", agent="task_agent", tool="list_tasks", args={}, answer=tagged("task")
    )

    answer = await client.chat("list my tasks")

    assert answer.types[0] == "stream_start"
    assert answer.types[-1] == "stream_end"
    assert answer.types.count("stream_text") > 1  # streamed, not one block
    [call] = answer.tool_calls
    assert (call["action"], call["table"], call["request_id"]) == (
        "select",
        "tasks",
        answer.request_id,
    )
    assert answer.text == f"Here you go: <task>[{first['id']},{second['id']}]</task>"
    assert INVENTED not in json.dumps(answer.frames)
    assert answer.mutations == []


CRUD = [
    # (message, agent, tool, args (from the seeded row), table, action)
    ("create a task", "task_agent", "create_task", lambda r: {"title": "Write proposal", "priority": "high"}, "tasks", "insert"),
    ("rename the task", "task_agent", "update_task", lambda r: {"task_id": r["tasks"]["id"], "title": "Renamed"}, "tasks", "update"),
    ("delete the task", "task_agent", "delete_task", lambda r: {"task_id": r["tasks"]["id"]}, "tasks", "delete"),
    ("list tasks", "task_agent", "list_tasks", lambda r: {"search": "seed"}, "tasks", None),
    ("create a project", "project_agent", "create_project", lambda r: {"name": "Website"}, "projects", "insert"),
    ("archive it", "project_agent", "update_project", lambda r: {"project_id": r["projects"]["id"], "status": "archived"}, "projects", "update"),
    ("delete the project", "project_agent", "delete_project", lambda r: {"project_id": r["projects"]["id"]}, "projects", "delete"),
    ("list projects", "project_agent", "list_projects", lambda r: {}, "projects", None),
    ("add a milestone", "timeline_agent", "create_timeline", lambda r: {"project_id": r["projects"]["id"], "title": "Launch", "date": "2026-12-01"}, "timelines", "insert"),
    ("move the milestone", "timeline_agent", "update_timeline", lambda r: {"timeline_id": r["timelines"]["id"], "date": "2026-12-15"}, "timelines", "update"),
    ("drop the milestone", "timeline_agent", "delete_timeline", lambda r: {"timeline_id": r["timelines"]["id"]}, "timelines", "delete"),
    ("list milestones", "timeline_agent", "list_timelines", lambda r: {"project_id": r["projects"]["id"]}, "timelines", None),
    ("write a note", "note_agent", "create_note", lambda r: {"title": "Ideas", "content": "# Ideas"}, "notes", "insert"),
    ("edit the note", "note_agent", "update_note", lambda r: {"note_id": r["notes"]["id"], "content": "# Better"}, "notes", "update"),
    ("delete the note", "note_agent", "delete_note", lambda r: {"note_id": r["notes"]["id"]}, "notes", "delete"),
    ("list notes", "note_agent", "list_notes", lambda r: {}, "notes", None),
]  # fmt: skip


@pytest.mark.parametrize(("message", "agent", "tool", "args", "table", "action"), CRUD)
async def test_each_domain_lists_creates_updates_and_deletes(
    assistant: Live,
    message: str,
    agent: str,
    tool: str,
    args: Callable[[dict[str, Any]], dict[str, Any]],
    table: str,
    action: str | None,
) -> None:
    client = await assistant.desktop(await assistant.account())
    project = seed(client, "projects", name="Seed project")
    rows = {
        "projects": project,
        "tasks": seed(client, "tasks", title="seed task"),
        "timelines": seed(client, "timelines", title="seed milestone", projectId=project["id"]),
        "notes": seed(client, "notes", title="seed note", content="# Seed"),
    }
    assistant.policy.plan(message, agent=agent, tool=tool, args=args(rows))
    before = client.store.rows(table)

    answer = await client.chat(message)

    after = client.store.rows(table)
    [call] = [c for c in answer.tool_calls if c["table"] == table]
    assert answer.types[-1] == "stream_end"
    assert answer.errors == []
    if action is None:
        assert call["action"] == "select"
        assert answer.mutations == []
        assert after == before
        assert rows[table]["id"] in answer.text
        return
    assert call["action"] == action
    [mutation] = answer.mutations
    assert (mutation["action"], mutation["table"]) == (action, table)
    if action == "insert":
        assert not {"id", "createdAt", "updatedAt"} & set(call["data"])
        [new] = [row for row in after if row not in before]
        assert mutation["data"] == new
        assert new["id"] in answer.text
    elif action == "update":
        assert set(call["data"]) == {"id", "updates"}
        [changed] = [row for row in after if row["id"] == rows[table]["id"]]
        assert mutation["data"] == changed
        assert changed != rows[table]
    else:
        assert mutation["data"] == {"id": rows[table]["id"]}
        assert rows[table]["id"] not in [row["id"] for row in after]


async def test_floating_names_its_domain_first_and_answers_in_plain_text(assistant: Live) -> None:
    client = await assistant.desktop(await assistant.account())
    note = seed(client, "notes", title="Plan", content="# Plan")
    assistant.policy.plan(
        "summarise this", agent="note_agent", tool="get_note", args={"note_id": note["id"]},
        answer=lambda report: "It is your plan note.",
    )  # fmt: skip

    answer = await client.floating("summarise this", "note", note["id"])

    assert answer.types[:2] == ["floating_domain", "stream_start"]
    assert answer.domain == "notes"
    assert answer.text == "It is your plan note."
    supervisor_prompt = assistant.llm.requests[0].system_prompt  # type: ignore[union-attr]
    assert f"looking at note {note['id']}" in supervisor_prompt


async def test_floating_without_delegation_defaults_to_tasks(assistant: Live) -> None:
    client = await assistant.desktop(await assistant.account())

    answer = await client.floating("hi", "project", "p1")

    assert answer.types == [
        "floating_domain",
        "stream_start",
        *["stream_text"] * (len(answer.types) - 3),
        "stream_end",
    ]
    assert answer.domain == "tasks"


async def test_two_concurrent_requests_on_one_socket(assistant: Live) -> None:
    client = await assistant.desktop(await assistant.account())
    seed(client, "tasks", title="Only task")
    seed(client, "notes", title="Only note", content="x")
    assistant.policy.plan("tasks please", agent="task_agent", tool="list_tasks", args={})
    assistant.policy.plan("notes please", agent="note_agent", tool="list_notes", args={})

    tasks, notes = await asyncio.gather(client.chat("tasks please"), client.chat("notes please"))

    assert "Only task" in tasks.text
    assert "Only note" not in tasks.text
    assert "Only note" in notes.text
    assert "Only task" not in notes.text
    assert {c["table"] for c in tasks.tool_calls} == {"tasks"}
    assert {c["table"] for c in notes.tool_calls} == {"notes"}


@pytest.mark.parametrize("live_settings", [{"tool_call_timeout_s": 0.3}])
async def test_tool_time_out_reaches_the_model_and_the_turn_still_ends(assistant: Live) -> None:
    account = await assistant.account()
    client = await assistant.desktop(account, on_tool_call=UnansweredToolCalls())
    assistant.policy.plan("list my tasks", agent="task_agent", tool="list_tasks", args={})

    answer = await client.chat("list my tasks")

    assert "did not answer within 0.3 seconds" in answer.text
    assert answer.types[-1] == "stream_end"
    assert len(assistant.link(account).protocol.pending) == 0


async def test_cancel_mid_turn_ends_the_request(assistant: Live) -> None:
    unanswered = UnansweredToolCalls()
    account = await assistant.account()
    client = await assistant.desktop(account, on_tool_call=unanswered)
    assistant.policy.plan("list my tasks", agent="task_agent", tool="list_tasks", args={})
    request_id = await client.start_request({"type": "home_request", "message": "list my tasks"})
    await unanswered.first()

    await client.cancel(request_id)
    result = await client.result(request_id, timeout_s=10)

    assert result.types[-1] == "stream_end"
    link = assistant.link(account)
    assert len(link.protocol.pending) == 0
    assert link.protocol.inflight == set()
    # The thread survives the cancelled turn: the next one works.
    client.on_tool_call = None
    assert (await client.chat("list my tasks")).types[-1] == "stream_end"


async def test_model_failure_ends_with_llm_error_then_stream_end(assistant: Live) -> None:
    client = await assistant.desktop(await assistant.account())
    assistant.llm.policy = lambda request: ErrorReply(500)  # type: ignore[union-attr]

    answer = await client.chat("hello")

    assert [f["type"] for f in answer.frames][-2:] == ["error", "stream_end"]
    assert answer.errors[0]["code"] == "llm_error"
    assert "500" not in answer.errors[0]["message"]


async def test_rest_chat_runs_tools_on_the_users_desktop(assistant: Live) -> None:
    account = await assistant.account()
    client = await assistant.desktop(account)
    assistant.policy.plan(
        "add a task", agent="task_agent", tool="create_task", args={"title": "From REST"},
        answer=tagged("task"),
    )  # fmt: skip

    response = await assistant.post(
        "/api/v1/chat", account.token, {"message": "add a task", "context": {"view": "home"}}
    )

    assert response.status_code == 200
    body = response.json()
    [row] = client.store.rows("tasks")
    assert body["mutations"] == [{"action": "insert", "table": "tasks", "data": row}]
    assert body["response"] == f"Here you go: <task>[{row['id']}]</task>"
    assert "What the app is showing" in assistant.llm.requests[0].last_message.text  # type: ignore[union-attr]


async def test_rest_chat_without_a_desktop_explains_and_is_still_200(assistant: Live) -> None:
    account = await assistant.account()
    assistant.policy.plan("list my tasks", agent="task_agent", tool="list_tasks", args={})

    response = await assistant.post("/api/v1/chat", account.token, {"message": "list my tasks"})

    assert response.status_code == 200
    assert "not connected" in response.json()["response"]
    assert response.json()["mutations"] == []


async def test_rest_chat_needs_a_token_and_a_model(assistant: Live) -> None:
    response = await assistant.post("/api/v1/chat", None, {"message": "hi"})

    assert response.status_code == 401


async def test_two_users_are_isolated(assistant: Live) -> None:
    ada, grace = await assistant.account(), await assistant.account()
    ada_desk = await assistant.desktop(ada)
    grace_desk = await assistant.desktop(grace)
    seed(ada_desk, "tasks", title="Ada's secret")
    seed(grace_desk, "tasks", title="Grace's secret")
    assistant.policy.plan("list my tasks", agent="task_agent", tool="list_tasks", args={})

    ada_answer, grace_answer = await asyncio.gather(
        ada_desk.chat("list my tasks", thread_id="shared-name"),
        grace_desk.chat("list my tasks", thread_id="shared-name"),
    )

    assert "Ada's secret" in ada_answer.text
    assert "Grace" not in ada_answer.text
    assert "Grace's secret" in grace_answer.text
    assert "Ada" not in grace_answer.text
    # The same thread_id names two different threads: neither saw the other's turn.
    second = await ada_desk.chat("hi again", thread_id="shared-name")
    assert second.types[-1] == "stream_end"
    last_prompt = assistant.llm.requests[-1]  # type: ignore[union-attr]
    assert "Grace" not in json.dumps(last_prompt.body)


async def test_threads_continue_and_survive_a_server_restart(
    assistant: Live, assistant_settings: Callable[[str], Settings]
) -> None:
    account = await assistant.account()
    client = await assistant.desktop(account)
    await client.chat("my name is Ada", thread_id="t1")
    await client.chat("what is my name?", thread_id="t1")
    assert "my name is Ada" in json.dumps(assistant.llm.requests[-1].body)  # type: ignore[union-attr]

    # A new server process state: new app, same database.
    llm = assistant.llm
    assert llm is not None
    async with running(assistant_settings(llm.api_base), assistant):
        again = await assistant.desktop(account)
        await again.chat("and again?", thread_id="t1")
        prompt = json.dumps(llm.requests[-1].body)
        other_thread = await again.chat("fresh start", thread_id="t2")

    assert "my name is Ada" in prompt
    assert "what is my name?" in prompt
    assert other_thread.types[-1] == "stream_end"
    # Another thread has its own conversation (memory may still recall the facts).
    conversation = [m.text for m in llm.requests[-1].messages if m.role != "system"]
    assert conversation == ["fresh start"]


@pytest.mark.parametrize("live_settings", [{"history_max_messages": 6}])
async def test_history_sent_to_the_model_is_bounded(assistant: Live) -> None:
    client = await assistant.desktop(await assistant.account())

    for n in range(8):
        await client.chat(f"message {n}", thread_id="long")

    prompt = assistant.llm.requests[-1]  # type: ignore[union-attr]
    said = [m.text for m in prompt.messages if m.role == "user"]
    assert said[-1] == "message 7"
    assert "message 0" not in said
    assert len([m for m in prompt.messages if m.role != "system"]) <= 6


async def test_conversation_history_seeds_a_new_thread_only(assistant: Live) -> None:
    client = await assistant.desktop(await assistant.account())
    history = [
        {"role": "user", "content": "I prefer short answers"},
        {"role": "assistant", "content": "Noted."},
    ]

    await client.chat("hello", thread_id="seeded", conversation_history=history)
    first_prompt = json.dumps(assistant.llm.requests[-1].body)  # type: ignore[union-attr]
    await client.chat(
        "again", thread_id="seeded", conversation_history=[{"role": "user", "content": "IGNORED"}]
    )
    second_prompt = json.dumps(assistant.llm.requests[-1].body)  # type: ignore[union-attr]

    assert "I prefer short answers" in first_prompt
    assert "IGNORED" not in second_prompt
    assert second_prompt.count("I prefer short answers") == 1


async def test_a_stated_preference_is_stored_encrypted_and_sets_the_time_zone(
    assistant: Live,
) -> None:
    client = await assistant.desktop(await assistant.account())
    assistant.policy.plan(
        "remember my timezone is Europe/Berlin", memory=("timezone", "Europe/Berlin")
    )

    await client.chat("remember my timezone is Europe/Berlin")
    await client.chat("what time is it?")

    assert "Europe/Berlin" in assistant.llm.requests[-1].system_prompt  # type: ignore[union-attr]
    async with assistant.app.state.engine.connect() as conn:
        rows = (
            await conn.execute(
                text("SELECT key_digest, key_encrypted, value_encrypted FROM core_memory")
            )
        ).all()
    [(digest, key, value)] = rows
    stored = digest.encode() + bytes(key) + bytes(value)
    assert b"Berlin" not in stored
    assert b"timezone" not in stored


async def test_prompts_offer_each_model_only_its_own_tools(assistant: Live) -> None:
    client = await assistant.desktop(await assistant.account())
    assistant.policy.plan("list my tasks", agent="task_agent", tool="list_tasks", args={})

    await client.chat("list my tasks")

    supervisor, subagent = assistant.llm.requests[0], assistant.llm.requests[1]  # type: ignore[union-attr]
    assert sorted(supervisor.tool_names) == ["task", "update_core_memory"]
    assert sorted(subagent.tool_names) == sorted(
        ["list_tasks", "create_task", "update_task", "delete_task", "list_tasks_due_today",
         "list_task_comments", "add_task_comment", "delete_task_comment"]
    )  # fmt: skip
    assert "general-purpose" not in supervisor.tool("task").description


@WITH_AND_WITHOUT_FALLBACKS
async def test_only_the_supervisor_streams_a_sub_agent_reads_its_answer_whole(
    assistant: Live,
) -> None:
    client = await assistant.desktop(await assistant.account())
    seed(client, "tasks", title="Invoice ACME")
    assistant.policy.plan(
        "list my tasks", agent="task_agent", tool="list_tasks", args={}, answer=tagged("task")
    )

    answer = await client.chat("list my tasks")

    streamed = [("task" in r.tool_names, r.stream) for r in assistant.llm.requests]  # type: ignore[union-attr]
    assert streamed == [(True, True), (False, False), (False, False), (True, True)]
    assert answer.types.count("stream_text") > 1
    assert ids_in(answer.text)  # the sub-agent's whole report reached the supervisor


@pytest.mark.parametrize("live_settings", [{"llm_fallback_models": ["openai/backup"]}])
async def test_a_failing_model_falls_back_to_the_next(assistant: Live) -> None:
    client = await assistant.desktop(await assistant.account())

    def primary_down(request: Any) -> Any:
        return ErrorReply(500) if request.model == "scripted" else "Answered by the backup."

    assistant.llm.policy = primary_down  # type: ignore[union-attr]

    answer = await client.chat("hello")

    assert answer.text == "Answered by the backup."
    assert {r.model for r in assistant.llm.requests} == {"scripted", "backup"}  # type: ignore[union-attr]


async def test_rest_chat_without_a_model_is_503_with_the_variable_to_set(live: Live) -> None:
    account = await live.account()

    response = await live.post("/api/v1/chat", account.token, {"message": "hi"})

    assert response.status_code == 503
    assert "LLM_MODEL" in response.json()["detail"]


# -- the model's stream cut mid-answer ----------------------------------------------


def cut_once(assistant: Live, fragment: str) -> None:
    """The next model call streams `fragment` and stops without a finish reason."""
    llm = assistant.llm
    assert llm is not None
    normal = llm.policy

    def policy(request: ChatRequest) -> ReplyLike:
        llm.policy = normal
        return TextReply(fragment, cut=True)

    llm.policy = policy


async def episodes(assistant: Live, token: str) -> int:
    counts: int = (await assistant.get("/api/v1/memory", token)).json()["counts"]["episodic"]
    return counts


@WITH_AND_WITHOUT_FALLBACKS
async def test_a_cut_answer_is_an_llm_error_and_is_not_remembered(assistant: Live) -> None:
    account = await assistant.account()
    client = await assistant.desktop(account)
    cut_once(assistant, "Once upon a time there was a half")

    cut = await client.chat("tell me a story", thread_id="story")
    whole = await client.chat("say hello", thread_id="story")

    assert [f["type"] for f in cut.frames][-2:] == ["error", "stream_end"]
    assert cut.errors[0]["code"] == "llm_error"
    assert whole.text == "Hello! How can I help?"
    # The fragment is neither in the thread the model sees next nor in memory.
    assert "there was a half" not in json.dumps(assistant.llm.requests[-1].body)  # type: ignore[union-attr]
    # Memory is written after stream_end, in the background: wait for the whole turn's.
    async with asyncio.timeout(10):
        while (count := await episodes(assistant, account.token)) == 0:  # noqa: ASYNC110 - polled over HTTP
            await asyncio.sleep(0.05)
    assert count == 1


async def test_a_cut_answer_over_rest_is_503_and_not_stored(assistant: Live) -> None:
    account = await assistant.account()
    cut_once(assistant, "Here is half an ans")

    response = await assistant.post("/api/v1/chat", account.token, {"message": "tell me"})
    after = await assistant.post("/api/v1/chat", account.token, {"message": "hello"})

    assert response.status_code == 503
    assert response.json()["detail"] == "The language model did not answer; please try again."
    assert after.status_code == 200
    assert "half an ans" not in json.dumps(assistant.llm.requests[-1].body)  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "live_settings",
    [{"llm_max_retries": 1}, {"llm_max_retries": 1, "llm_fallback_models": ["openai/backup"]}],
    ids=["model", "router"],
)
async def test_a_stream_cut_before_any_output_is_retried(assistant: Live) -> None:
    client = await assistant.desktop(await assistant.account())
    cut_once(assistant, "")

    answer = await client.chat("hello")

    assert answer.errors == []
    assert answer.text == "Hello! How can I help?"
    assert len(assistant.llm.requests) == 2  # type: ignore[union-attr]


async def test_floating_answers_lose_every_tag_and_keep_the_words(assistant: Live) -> None:
    client = await assistant.desktop(await assistant.account())
    task = seed(client, "tasks", title="Invoice")
    assistant.policy.plan(
        "what is due", agent="task_agent", tool="list_tasks", args={},
        answer=lambda report: (
            f"Due: <task>[{task['id']}]</task> <project>[{task['id']}]</project> "
            '<b>soon</b> <chart>{"chartType": "bar", broken</chart> <task>[unclosed'
        ),
    )  # fmt: skip

    answer = await client.floating("what is due", "task", task["id"])

    assert answer.domain == "tasks"
    assert answer.text == "Due:   soon  "
