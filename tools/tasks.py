"""Task and task-comment tools of the `task_agent` (SPEC §2), run on the user's desktop."""

from __future__ import annotations

import json
from typing import Annotated, Literal

from langchain_core.tools import BaseTool
from pydantic import Field

from tools._client import (
    AiSuggested,
    AiSuggestedChange,
    ApprovedChange,
    ApprovedOnCreate,
    Entity,
    Row,
    describe,
    domain_tool,
    suggestion_changes,
    suggestion_flags,
    suggestion_state,
)
from tools._dates import parse_moment, render_moment, today_bounds
from tools.context import current_turn_context

TaskStatus = Literal["todo", "in_progress", "done"]
TaskPriority = Literal["high", "medium", "low"]
TaskOrder = Literal[
    "due_date",
    "-due_date",
    "priority",
    "-priority",
    "created_at",
    "-created_at",
    "title",
    "-title",
    "status",
    "-status",
]

# The desktop's orderBy names the column; the tool speaks snake_case like its arguments.
_ORDER_COLUMNS = {
    "due_date": "dueDate",
    "priority": "priority",
    "created_at": "createdAt",
    "title": "title",
    "status": "status",
}

_DESCRIPTION_PREVIEW = 60

TaskId = Annotated[str, Field(description="The task's id, as list_tasks shows it.")]
CommentId = Annotated[str, Field(description="The comment's id, as list_task_comments shows it.")]
ProjectFilter = Annotated[
    str | None, Field(description="Only tasks of the project with this id; omit for all projects.")
]
ProjectOfTask = Annotated[
    str | None, Field(description="Id of the project the task belongs to; omit for none/unchanged.")
]
Description = Annotated[str | None, Field(description="Longer free-text description.")]
Assignees = Annotated[
    list[str] | None,
    Field(
        description='Names of the people assigned, e.g. ["Ana", "Ben"]; replaces the whole list.'
    ),
]
DueDate = Annotated[
    str | None,
    Field(
        description=(
            "Due date in ISO 8601 in the user's time zone: a date (2026-11-27) means the"
            " start of that day; add a time for a deadline at that hour (2026-11-27T17:00)."
        )
    ),
]


def _assignees(row: Row) -> str | None:
    raw = row.get("assignee")
    try:
        names = json.loads(raw) if isinstance(raw, str) else raw
    except json.JSONDecodeError:
        names = raw  # not the JSON array the desktop should store; show it as it is
    if not names:
        return None
    shown = ", ".join(map(str, names)) if isinstance(names, list) else str(names)
    return f"assigned to {shown}"


def _preview(text: object) -> str | None:
    if not isinstance(text, str) or not text.strip():
        return None
    flat = " ".join(text.split())
    if len(flat) > _DESCRIPTION_PREVIEW:
        # Cut at a word boundary (one extra character tells whether the cut ends a word).
        flat = flat[: _DESCRIPTION_PREVIEW + 1].rsplit(" ", 1)[0] + "…"
    return f'description "{flat}"'


def _task_line(row: Row) -> str:
    due = row.get("dueDate")
    project = row.get("projectId")
    return describe(
        f"[{row.get('status')}] {row.get('title')}",
        row,
        f"due {render_moment(due)}" if due is not None else None,
        f"priority {row.get('priority')}",
        _assignees(row),
        f"project {project}" if project else None,
        suggestion_state(row),
        _preview(row.get("description")),
    )


def _comment_line(row: Row) -> str:
    author = row.get("author") or "unknown author"
    return describe(f"{render_moment(row.get('createdAt'))} {author}: {row.get('content')}", row)


TASKS = Entity(table="tasks", noun="task", plural="tasks", line=_task_line)
COMMENTS = Entity(
    table="taskComments", noun="task comment", plural="task comments", line=_comment_line
)


def _assignee_column(names: list[str] | None) -> str | None:
    # The desktop stores names as the JSON array string JSON.stringify writes.
    return None if names is None else json.dumps(names, ensure_ascii=False, separators=(",", ":"))


def _task_columns(
    title: str | None,
    description: str | None,
    status: TaskStatus | None,
    priority: TaskPriority | None,
    assignees: list[str] | None,
    due_date: str | None,
    project_id: str | None,
) -> Row:
    """The desktop's columns for the arguments create and update share (None: not given)."""
    return {
        "projectId": project_id,
        "title": title,
        "description": description,
        "status": status,
        "priority": priority,
        "assignee": _assignee_column(assignees),
        "dueDate": parse_moment(due_date, argument="due_date"),
    }


@domain_tool
async def list_tasks(
    project_id: ProjectFilter = None,
    status: Annotated[TaskStatus | None, Field(description="Only tasks in this status.")] = None,
    search: Annotated[
        str | None,
        Field(description="Only tasks whose title or description contains this text (any case)."),
    ] = None,
    order_by: Annotated[
        TaskOrder | None,
        Field(
            description=(
                "Sort order; a leading '-' reverses it. priority ascends low→high, so"
                " '-priority' puts the most important first; status goes todo→done."
                " Default: oldest created first."
            )
        ),
    ] = None,
) -> str:
    """List the user's tasks, optionally filtered by project, status or text.

    Each line shows status, title, id, due date, priority, assignees and
    project. Tasks without a due date sort last when ordering by due date.
    """
    order = None
    if order_by is not None:
        column = _ORDER_COLUMNS[order_by.removeprefix("-")]
        order = f"-{column}" if order_by.startswith("-") else column
    return await TASKS.select(
        {"projectId": project_id, "status": status, "search": search, "orderBy": order}
    )


@domain_tool
async def create_task(
    title: Annotated[str, Field(min_length=1, description="Short title of the task.")],
    description: Description = None,
    status: Annotated[TaskStatus, Field(description="Workflow status.")] = "todo",
    priority: Annotated[TaskPriority, Field(description="Importance.")] = "medium",
    assignees: Assignees = None,
    due_date: DueDate = None,
    project_id: ProjectOfTask = None,
    is_ai_suggested: AiSuggested = False,
    is_approved: ApprovedOnCreate = None,
) -> str:
    """Create a task in the user's workspace and return it with its new id.

    Use is_ai_suggested=true only for tasks you propose without being asked;
    they stay unapproved until the user confirms them.
    """
    columns = _task_columns(title, description, status, priority, assignees, due_date, project_id)
    return await TASKS.create(
        {**columns, **suggestion_flags(is_ai_suggested=is_ai_suggested, is_approved=is_approved)}
    )


@domain_tool
async def update_task(
    task_id: TaskId,
    title: Annotated[str | None, Field(description="New title.")] = None,
    description: Description = None,
    status: Annotated[TaskStatus | None, Field(description="New workflow status.")] = None,
    priority: Annotated[TaskPriority | None, Field(description="New importance.")] = None,
    assignees: Assignees = None,
    due_date: DueDate = None,
    project_id: ProjectOfTask = None,
    is_ai_suggested: AiSuggestedChange = None,
    is_approved: ApprovedChange = None,
) -> str:
    """Change a task. Only the fields you pass change; everything omitted stays as it is.

    To approve an AI-suggested task the user confirmed, pass is_approved=true.
    """
    columns = _task_columns(title, description, status, priority, assignees, due_date, project_id)
    return await TASKS.update(
        task_id,
        {
            **columns,
            **suggestion_changes(is_ai_suggested=is_ai_suggested, is_approved=is_approved),
        },
    )


@domain_tool
async def delete_task(task_id: TaskId) -> str:
    """Delete a task permanently. For finished work, prefer update_task with status done."""
    return await TASKS.delete(task_id)


@domain_tool
async def list_tasks_due_today() -> str:
    """List every task due today in the user's time zone, earliest first.

    Done tasks are included (their status shows); tasks without a due date are not.
    """
    today, first_ms, last_ms = today_bounds()
    return await TASKS.select(
        {"dueDateFrom": first_ms, "dueDateTo": last_ms, "orderBy": "dueDate"},
        scope=f"due today ({today}, {current_turn_context().timezone})",
    )


@domain_tool
async def list_task_comments(task_id: TaskId) -> str:
    """List the comments on a task, oldest first, with author, time and id."""
    return await COMMENTS.select({"taskId": task_id})


@domain_tool
async def add_task_comment(
    task_id: TaskId,
    author: Annotated[
        str,
        Field(
            min_length=1,
            description="Who writes it: the user's name if they dictate it, 'Adiuva' for you.",
        ),
    ],
    content: Annotated[str, Field(min_length=1, description="The comment text.")],
) -> str:
    """Add a comment to a task."""
    return await COMMENTS.create({"taskId": task_id, "author": author, "content": content})


@domain_tool
async def delete_task_comment(comment_id: CommentId) -> str:
    """Delete one comment of a task permanently."""
    return await COMMENTS.delete(comment_id)


TASK_TOOLS: list[BaseTool] = [
    list_tasks,
    create_task,
    update_task,
    delete_task,
    list_tasks_due_today,
    list_task_comments,
    add_task_comment,
    delete_task_comment,
]
