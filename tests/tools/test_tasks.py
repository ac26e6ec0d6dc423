"""Task and task-comment tools: the frames they send and the text they answer."""

from __future__ import annotations

from datetime import datetime

import pytest

from tests.tools.fake_desktop import StoreDesktop, ms, run
from tools.context import turn_context
from tools.tasks import (
    add_task_comment,
    create_task,
    delete_task,
    delete_task_comment,
    list_task_comments,
    list_tasks,
    list_tasks_due_today,
    update_task,
)


async def test_list_tasks_sends_every_given_filter_and_lists_the_matches(
    desktop: StoreDesktop,
) -> None:
    late = desktop.seed(
        "tasks", title="Invoice ACME", projectId="p1", dueDate=ms("2026-11-27T00:00:00+00:00")
    )
    soon = desktop.seed(
        "tasks",
        title="Acme follow-up",
        projectId="p1",
        priority="high",
        dueDate=ms("2026-11-20T00:00:00+00:00"),
    )
    desktop.seed("tasks", title="Invoice ACME", projectId="p2")
    desktop.seed("tasks", title="Invoice ACME", projectId="p1", status="done")

    text = await run(
        list_tasks, project_id="p1", status="todo", search="acme", order_by="-due_date"
    )

    assert desktop.sent() == [
        {
            "action": "select",
            "table": "tasks",
            "filters": {
                "projectId": "p1",
                "status": "todo",
                "search": "acme",
                "orderBy": "-dueDate",
            },
        }
    ]
    assert text == (
        "2 tasks found:\n"
        f"- [todo] Invoice ACME (id {late['id']}, due 2026-11-27, priority medium, project p1)\n"
        f"- [todo] Acme follow-up (id {soon['id']}, due 2026-11-20, priority high, project p1)"
    )


async def test_list_tasks_without_arguments_sends_no_filter_keys(desktop: StoreDesktop) -> None:
    assert await run(list_tasks) == "No tasks found."
    assert desktop.sent() == [{"action": "select", "table": "tasks", "filters": {}}]


@pytest.mark.parametrize(
    ("order_by", "desktop_order"),
    [
        ("due_date", "dueDate"),
        ("-due_date", "-dueDate"),
        ("created_at", "createdAt"),
        ("-priority", "-priority"),
        ("title", "title"),
        ("-status", "-status"),
    ],
)
async def test_list_tasks_order_is_sent_as_the_desktop_column(
    desktop: StoreDesktop, order_by: str, desktop_order: str
) -> None:
    await run(list_tasks, order_by=order_by)

    assert desktop.sent()[0]["filters"] == {"orderBy": desktop_order}


async def test_a_long_list_is_cut_with_a_hint_to_narrow_it(desktop: StoreDesktop) -> None:
    for number in range(52):
        desktop.seed("tasks", title=f"Task {number}")

    lines = (await run(list_tasks)).splitlines()

    assert lines[0] == "52 tasks found:"
    assert len(lines) == 1 + 50 + 1
    assert lines[50].startswith("- [todo] Task 49 (id ")
    assert lines[-1] == "… and 2 more not shown; narrow the filters."


async def test_list_tasks_shows_assignees_suggestion_state_and_a_description_preview(
    desktop: StoreDesktop,
) -> None:
    row = desktop.seed(
        "tasks",
        title="Draft offer",
        assignee=["Ana", "Bø"],
        isAiSuggested=1,
        isApproved=0,
        description="Line one\nand a rather long second line that goes on and on beyond the cut",
    )

    text = await run(list_tasks)

    assert text.splitlines()[1] == (
        f"- [todo] Draft offer (id {row['id']}, priority medium, assigned to Ana, Bø,"
        " AI-suggested, awaiting approval,"
        ' description "Line one and a rather long second line that goes on and on…")'
    )


async def test_create_task_sends_only_the_given_columns_and_returns_the_new_id(
    desktop: StoreDesktop,
) -> None:
    text = await run(create_task, title="Invoice ACME")

    [row] = desktop.store.rows("tasks")
    assert desktop.sent() == [
        {
            "action": "insert",
            "table": "tasks",
            "data": {
                "title": "Invoice ACME",
                "status": "todo",
                "priority": "medium",
                "isAiSuggested": 0,
                "isApproved": 1,
            },
        }
    ]
    assert text == f"Created task: [todo] Invoice ACME (id {row['id']}, priority medium)."


async def test_create_task_with_every_field_converts_names_dates_and_flags(
    desktop: StoreDesktop,
) -> None:
    with turn_context(timezone="Europe/Berlin"):
        text = await run(
            create_task,
            title="Invoice ACME",
            description="Hours of November",
            status="in_progress",
            priority="high",
            assignees=["Ana", "Bø"],
            due_date="2026-11-27",
            project_id="p1",
            is_ai_suggested=True,
        )

    [frame] = desktop.sent()
    assert frame["data"] == {
        "projectId": "p1",
        "title": "Invoice ACME",
        "description": "Hours of November",
        "status": "in_progress",
        "priority": "high",
        "assignee": '["Ana","Bø"]',
        # The start of 27 November in Berlin (CET, UTC+1).
        "dueDate": ms("2026-11-26T23:00:00+00:00"),
        "isAiSuggested": 1,
        "isApproved": 0,  # the assistant's own suggestion awaits the user's approval
    }
    assert not {"id", "createdAt", "updatedAt"} & frame["data"].keys()
    [row] = desktop.store.rows("tasks")
    assert row["assignee"] == '["Ana","Bø"]'
    assert text == (
        f"Created task: [in_progress] Invoice ACME (id {row['id']}, due 2026-11-27,"
        " priority high, assigned to Ana, Bø, project p1, AI-suggested, awaiting approval,"
        ' description "Hours of November").'
    )


async def test_an_explicit_approval_overrides_the_suggestion_default(
    desktop: StoreDesktop,
) -> None:
    await run(create_task, title="Call Ana", is_ai_suggested=True, is_approved=True)

    assert desktop.sent()[0]["data"]["isApproved"] == 1


@pytest.mark.parametrize(
    ("given", "stored", "shown"),
    [
        # Winter time, UTC+1.
        ("2026-03-28", "2026-03-27T23:00:00+00:00", "2026-03-28"),
        ("2026-03-28T17:00", "2026-03-28T16:00:00+00:00", "2026-03-28 17:00"),
        # Clocks go forward on 29 March: that midnight is still UTC+1, 17:00 is UTC+2.
        ("2026-03-29", "2026-03-28T23:00:00+00:00", "2026-03-29"),
        ("2026-03-29T17:00", "2026-03-29T15:00:00+00:00", "2026-03-29 17:00"),
        # An explicit offset is honoured as given.
        ("2026-03-29T17:00Z", "2026-03-29T17:00:00+00:00", "2026-03-29 19:00"),
    ],
)
async def test_due_dates_are_read_and_shown_in_the_users_zone_across_dst(
    desktop: StoreDesktop, given: str, stored: str, shown: str
) -> None:
    task = desktop.seed("tasks", title="Launch")

    with turn_context(timezone="Europe/Berlin"):
        text = await run(update_task, task_id=task["id"], due_date=given)

    assert desktop.sent()[0]["data"] == {"id": task["id"], "updates": {"dueDate": ms(stored)}}
    assert f"due {shown}," in text


async def test_an_unreadable_due_date_is_an_error_and_nothing_is_sent(
    desktop: StoreDesktop,
) -> None:
    text = await run(create_task, title="Launch", due_date="next Friday")

    assert text == (
        "Error: due_date must be an ISO 8601 date or date-time such as 2026-11-27 or"
        " 2026-11-27T17:00, got 'next Friday'"
    )
    assert desktop.sent() == []


async def test_update_task_sends_only_the_given_fields_and_leaves_the_rest(
    desktop: StoreDesktop,
) -> None:
    task = desktop.seed(
        "tasks",
        title="Invoice ACME",
        priority="high",
        assignee=["Ana"],
        isAiSuggested=1,
        isApproved=0,
    )

    text = await run(update_task, task_id=task["id"], status="done", is_approved=True)

    assert desktop.sent() == [
        {
            "action": "update",
            "table": "tasks",
            "data": {"id": task["id"], "updates": {"status": "done", "isApproved": 1}},
        }
    ]
    [row] = desktop.store.rows("tasks")
    assert {k: row[k] for k in ("title", "priority", "assignee", "isAiSuggested")} == {
        "title": "Invoice ACME",
        "priority": "high",
        "assignee": '["Ana"]',
        "isAiSuggested": 1,
    }
    assert text == (
        f"Updated task (status, isApproved changed): [done] Invoice ACME (id {task['id']},"
        " priority high, assigned to Ana, AI-suggested)."
    )


async def test_update_task_sends_every_field_under_its_column(desktop: StoreDesktop) -> None:
    task = desktop.seed("tasks", title="Old")

    await run(
        update_task,
        task_id=task["id"],
        title="New",
        description="Details",
        priority="low",
        assignees=[],
        due_date="2026-11-27T08:30+00:00",
        project_id="p9",
        is_ai_suggested=False,
    )

    assert desktop.sent()[0]["data"]["updates"] == {
        "projectId": "p9",
        "title": "New",
        "description": "Details",
        "priority": "low",
        "assignee": "[]",
        "dueDate": ms("2026-11-27T08:30:00+00:00"),
        "isAiSuggested": 0,
    }


async def test_update_task_with_nothing_to_change_does_not_call_the_desktop(
    desktop: StoreDesktop,
) -> None:
    text = await run(update_task, task_id="t1")

    assert text == (
        "Nothing to change: no field was given to update task t1."
        " Pass only the fields that should change."
    )
    assert desktop.sent() == []


async def test_update_of_an_unknown_task_answers_the_desktops_error(
    desktop: StoreDesktop,
) -> None:
    text = await run(update_task, task_id="nope", status="done")

    assert text == "Error: no tasks row with id 'nope'"


async def test_delete_task_sends_the_id_and_the_row_is_gone(desktop: StoreDesktop) -> None:
    task = desktop.seed("tasks", title="Invoice ACME")

    text = await run(delete_task, task_id=task["id"])

    assert desktop.sent() == [{"action": "delete", "table": "tasks", "data": {"id": task["id"]}}]
    assert text == f"Deleted task {task['id']}."
    assert desktop.store.rows("tasks") == []


async def test_tasks_due_today_are_bounded_by_the_users_day_on_a_dst_day(
    desktop: StoreDesktop,
) -> None:
    # 29 March 2026 in Berlin has 23 hours: 2026-03-28T23:00Z up to 2026-03-29T22:00Z.
    desktop.seed("tasks", title="Yesterday late", dueDate=ms("2026-03-28T22:59:59.999+00:00"))
    first = desktop.seed("tasks", title="At midnight", dueDate=ms("2026-03-28T23:00:00+00:00"))
    done = desktop.seed(
        "tasks", title="Last minute", status="done", dueDate=ms("2026-03-29T21:59:59.999+00:00")
    )
    afternoon = desktop.seed("tasks", title="Afternoon", dueDate=ms("2026-03-29T15:00:00+00:00"))
    desktop.seed("tasks", title="Tomorrow", dueDate=ms("2026-03-29T22:00:00+00:00"))
    desktop.seed("tasks", title="Undated")

    with turn_context(
        timezone="Europe/Berlin", now=datetime.fromisoformat("2026-03-29T23:30+02:00")
    ):
        text = await run(list_tasks_due_today)

    assert desktop.sent() == [
        {
            "action": "select",
            "table": "tasks",
            "filters": {
                "dueDateFrom": ms("2026-03-28T23:00:00+00:00"),
                "dueDateTo": ms("2026-03-29T22:00:00+00:00") - 1,
                "orderBy": "dueDate",
            },
        }
    ]
    assert text == (
        "3 tasks due today (2026-03-29, Europe/Berlin):\n"
        f"- [todo] At midnight (id {first['id']}, due 2026-03-29, priority medium)\n"
        f"- [todo] Afternoon (id {afternoon['id']}, due 2026-03-29 17:00, priority medium)\n"
        f"- [done] Last minute (id {done['id']}, due 2026-03-29 23:59, priority medium)"
    )


async def test_today_is_the_users_date_not_the_servers(desktop: StoreDesktop) -> None:
    # 23:30 UTC on 26 November is already 27 November in Berlin.
    with turn_context(
        timezone="Europe/Berlin", now=datetime.fromisoformat("2026-11-26T23:30+00:00")
    ):
        text = await run(list_tasks_due_today)

    assert desktop.sent()[0]["filters"]["dueDateFrom"] == ms("2026-11-26T23:00:00+00:00")
    assert text == "No tasks due today (2026-11-27, Europe/Berlin)."


async def test_list_task_comments_filters_by_task_and_shows_author_and_time(
    desktop: StoreDesktop,
) -> None:
    comment = desktop.seed("taskComments", taskId="t1", author="Ana", content="Sent on Monday")
    desktop.seed("taskComments", taskId="t2", author="Ben", content="Other task")

    with turn_context(timezone="Europe/Berlin"):
        text = await run(list_task_comments, task_id="t1")

    assert desktop.sent() == [
        {"action": "select", "table": "taskComments", "filters": {"taskId": "t1"}}
    ]
    assert text == (
        f"1 task comment found:\n- 2026-11-18 10:30 Ana: Sent on Monday (id {comment['id']})"
    )


async def test_add_task_comment_inserts_task_author_and_content(desktop: StoreDesktop) -> None:
    text = await run(add_task_comment, task_id="t1", author="Adiuva", content="Reminder sent")

    [row] = desktop.store.rows("taskComments")
    assert desktop.sent() == [
        {
            "action": "insert",
            "table": "taskComments",
            "data": {"taskId": "t1", "author": "Adiuva", "content": "Reminder sent"},
        }
    ]
    assert text == (
        f"Created task comment: 2026-11-18 09:30 Adiuva: Reminder sent (id {row['id']})."
    )


async def test_delete_task_comment_sends_the_id(desktop: StoreDesktop) -> None:
    comment = desktop.seed("taskComments", taskId="t1", content="Obsolete")

    text = await run(delete_task_comment, comment_id=comment["id"])

    assert desktop.sent() == [
        {"action": "delete", "table": "taskComments", "data": {"id": comment["id"]}}
    ]
    assert text == f"Deleted task comment {comment['id']}."
    assert desktop.store.rows("taskComments") == []
