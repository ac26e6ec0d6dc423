"""The tools as the model sees them: names, groups, arguments, enums and defaults."""

from __future__ import annotations

from typing import Any

import pytest
from langchain_core.utils.function_calling import convert_to_openai_tool

from tools import ALL_DOMAIN_TOOLS, NOTE_TOOLS, PROJECT_TOOLS, TASK_TOOLS, TIMELINE_TOOLS

TASK_STATUSES = ["todo", "in_progress", "done"]
PRIORITIES = ["high", "medium", "low"]

# SPEC §2: each tool's arguments in order, and which of them are required.
ARGUMENTS: dict[str, tuple[list[str], list[str]]] = {
    "list_tasks": (["project_id", "status", "search", "order_by"], []),
    "create_task": (
        [
            "title",
            "description",
            "status",
            "priority",
            "assignees",
            "due_date",
            "project_id",
            "is_ai_suggested",
            "is_approved",
        ],
        ["title"],
    ),
    "update_task": (
        [
            "task_id",
            "title",
            "description",
            "status",
            "priority",
            "assignees",
            "due_date",
            "project_id",
            "is_ai_suggested",
            "is_approved",
        ],
        ["task_id"],
    ),
    "delete_task": (["task_id"], ["task_id"]),
    "list_tasks_due_today": ([], []),
    "list_task_comments": (["task_id"], ["task_id"]),
    "add_task_comment": (["task_id", "author", "content"], ["task_id", "author", "content"]),
    "delete_task_comment": (["comment_id"], ["comment_id"]),
    "list_projects": (["client_id", "include_archived"], []),
    "list_all_projects": ([], []),
    "get_project": (["project_id"], ["project_id"]),
    "create_project": (["name", "client_id"], ["name"]),
    "update_project": (
        ["project_id", "name", "client_id", "status", "ai_summary"],
        ["project_id"],
    ),
    "delete_project": (["project_id"], ["project_id"]),
    "list_timelines": (["project_id"], []),
    "create_timeline": (
        ["project_id", "title", "date", "is_ai_suggested", "is_approved"],
        ["project_id", "title"],
    ),
    "update_timeline": (
        ["timeline_id", "title", "date", "project_id", "is_ai_suggested", "is_approved"],
        ["timeline_id"],
    ),
    "delete_timeline": (["timeline_id"], ["timeline_id"]),
    "list_notes": (["project_id"], []),
    "get_note": (["note_id"], ["note_id"]),
    "create_note": (["title", "content", "project_id"], ["title"]),
    "update_note": (["note_id", "title", "content", "project_id"], ["note_id"]),
    "delete_note": (["note_id"], ["note_id"]),
}
SCHEMAS = {tool.name: convert_to_openai_tool(tool)["function"] for tool in ALL_DOMAIN_TOOLS}


def _enum(schema: dict[str, Any]) -> list[str]:
    """The allowed values of an argument, optional (anyOf with null) or not."""
    for option in schema.get("anyOf", [schema]):
        if "enum" in option:
            values: list[str] = option["enum"]
            return values
    pytest.fail(f"no enum in {schema}")


def test_the_groups_hold_the_23_tools_of_the_spec() -> None:
    assert [t.name for t in TASK_TOOLS] == [
        "list_tasks",
        "create_task",
        "update_task",
        "delete_task",
        "list_tasks_due_today",
        "list_task_comments",
        "add_task_comment",
        "delete_task_comment",
    ]
    assert [t.name for t in PROJECT_TOOLS] == [
        "list_projects",
        "list_all_projects",
        "get_project",
        "create_project",
        "update_project",
        "delete_project",
    ]
    assert [t.name for t in TIMELINE_TOOLS] == [
        "list_timelines",
        "create_timeline",
        "update_timeline",
        "delete_timeline",
    ]
    assert [t.name for t in NOTE_TOOLS] == [
        "list_notes",
        "get_note",
        "create_note",
        "update_note",
        "delete_note",
    ]
    assert [*TASK_TOOLS, *PROJECT_TOOLS, *TIMELINE_TOOLS, *NOTE_TOOLS] == ALL_DOMAIN_TOOLS
    assert list(SCHEMAS) == list(ARGUMENTS)


@pytest.mark.parametrize("name", ARGUMENTS)
def test_each_tool_offers_exactly_its_arguments(name: str) -> None:
    arguments, required = ARGUMENTS[name]
    parameters = SCHEMAS[name]["parameters"]

    assert list(parameters["properties"]) == arguments
    assert parameters.get("required", []) == required


@pytest.mark.parametrize("name", ARGUMENTS)
def test_each_tool_and_argument_is_described_for_the_model(name: str) -> None:
    schema = SCHEMAS[name]

    assert len(schema["description"]) > 20
    assert not schema["description"].startswith(" ")
    assert "\n    " not in schema["description"]  # no docstring indentation leaks through
    for argument, spec in schema["parameters"]["properties"].items():
        assert len(spec.get("description", "")) > 5, f"{name}.{argument} has no description"


@pytest.mark.parametrize(
    "name", ["update_task", "update_project", "update_timeline", "update_note"]
)
def test_update_arguments_default_to_null_meaning_leave_unchanged(name: str) -> None:
    properties = SCHEMAS[name]["parameters"]["properties"]
    id_argument, *fields = properties

    assert "default" not in properties[id_argument]
    assert {field: properties[field]["default"] for field in fields} == dict.fromkeys(fields)
    assert "Only the fields you pass change" in SCHEMAS[name]["description"]


def test_status_priority_and_order_are_enums() -> None:
    for name in ("list_tasks", "create_task", "update_task"):
        assert _enum(SCHEMAS[name]["parameters"]["properties"]["status"]) == TASK_STATUSES
    for name in ("create_task", "update_task"):
        assert _enum(SCHEMAS[name]["parameters"]["properties"]["priority"]) == PRIORITIES
    assert _enum(SCHEMAS["update_project"]["parameters"]["properties"]["status"]) == [
        "active",
        "archived",
    ]
    order = _enum(SCHEMAS["list_tasks"]["parameters"]["properties"]["order_by"])
    assert sorted(order) == sorted(
        f"{sign}{column}"
        for sign in ("", "-")
        for column in ("due_date", "priority", "created_at", "title", "status")
    )


def test_typed_arguments_are_booleans_and_name_lists() -> None:
    create_task = SCHEMAS["create_task"]["parameters"]["properties"]

    assert create_task["is_ai_suggested"] == {
        "default": False,
        "description": create_task["is_ai_suggested"]["description"],
        "type": "boolean",
    }
    assert {"type": "array", "items": {"type": "string"}} in create_task["assignees"]["anyOf"]
    assert (create_task["status"]["default"], create_task["priority"]["default"]) == (
        "todo",
        "medium",
    )
    assert "ISO 8601" in create_task["due_date"]["description"]
    assert "start of that day" in create_task["due_date"]["description"]
    assert SCHEMAS["list_projects"]["parameters"]["properties"]["include_archived"]["type"] == (
        "boolean"
    )
