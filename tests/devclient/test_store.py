"""The devclient's local store answers tool calls the way the desktop app does (SPEC §3, §4)."""

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devclient.store import LocalStore, StoreError

SPEC_COLUMNS = {
    "tasks": [
        "id",
        "projectId",
        "title",
        "description",
        "status",
        "priority",
        "assignee",
        "dueDate",
        "isAiSuggested",
        "isApproved",
        "createdAt",
    ],
    "projects": [
        "id",
        "clientId",
        "name",
        "status",
        "aiSummary",
        "isAiSuggested",
        "isApproved",
        "createdAt",
    ],
    "timelines": ["id", "projectId", "title", "date", "isAiSuggested", "isApproved", "createdAt"],
    "notes": [
        "id",
        "projectId",
        "title",
        "content",
        "isAiSuggested",
        "isApproved",
        "createdAt",
        "updatedAt",
    ],
    "taskComments": ["id", "taskId", "author", "content", "createdAt"],
    "clients": ["id", "parentId", "name", "industry", "createdAt"],
}

MINIMAL_INSERTS: dict[str, dict[str, Any]] = {
    "tasks": {"title": "Write invoice"},
    "projects": {"name": "Website"},
    "timelines": {"projectId": "p1", "title": "Launch"},
    "notes": {"title": "Kickoff"},
    "taskComments": {"taskId": "t1", "content": "Looks good"},
    "clients": {"name": "Acme"},
}


class FakeClock:
    """Unix ms that advance by one per reading unless a test sets `now`."""

    def __init__(self) -> None:
        self.now = 1_700_000_000_000

    def __call__(self) -> int:
        self.now += 1
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def store(clock: FakeClock) -> Iterator[LocalStore]:
    local_store = LocalStore(":memory:", clock=clock)
    yield local_store
    local_store.close()


def insert(store: LocalStore, table: str, **data: Any) -> dict[str, Any]:
    """Insert a row and return it, failing the test on an error result."""
    result = store.execute(action="insert", table=table, data=data)
    assert "error" not in result, result
    row: dict[str, Any] = result["row"]
    return row


def select(store: LocalStore, table: str, **filters: Any) -> list[dict[str, Any]]:
    """Select rows, failing the test on an error result."""
    result = store.execute(action="select", table=table, filters=filters)
    assert set(result) == {"rows"}, result
    rows: list[dict[str, Any]] = result["rows"]
    return rows


def titles(rows: list[dict[str, Any]]) -> list[str]:
    return [row["title"] for row in rows]


# --- schema and insert ------------------------------------------------------


@pytest.mark.parametrize("table", SPEC_COLUMNS)
def test_insert_returns_the_row_with_exactly_the_spec_columns(
    store: LocalStore, table: str
) -> None:
    result = store.execute(action="insert", table=table, data=MINIMAL_INSERTS[table])

    assert set(result) == {"row"}
    assert list(result["row"]) == SPEC_COLUMNS[table]
    assert store.rows(table) == [result["row"]]


def test_insert_generates_a_uuid_hex_id_and_created_at(store: LocalStore, clock: FakeClock) -> None:
    clock.now = 1_750_000_000_000

    row = insert(store, "tasks", title="Write invoice")

    assert uuid.UUID(hex=row["id"]).hex == row["id"]
    assert row["createdAt"] == 1_750_000_000_001


def test_inserted_rows_get_distinct_ids(store: LocalStore) -> None:
    ids = {insert(store, "clients", name=f"Client {n}")["id"] for n in range(20)}

    assert len(ids) == 20


def test_task_insert_fills_defaults_for_absent_fields(store: LocalStore) -> None:
    row = insert(store, "tasks", title="Write invoice")

    assert row["status"] == "todo"
    assert row["priority"] == "medium"
    assert row["assignee"] == "[]"
    assert row["isAiSuggested"] == 0
    assert row["isApproved"] == 1
    assert row["description"] is None
    assert row["dueDate"] is None


def test_task_insert_keeps_given_values_over_defaults(store: LocalStore) -> None:
    row = insert(
        store,
        "tasks",
        title="Call Acme",
        description="About the quote",
        status="in_progress",
        priority="high",
        dueDate=1_760_000_000_000,
        projectId="p1",
        isAiSuggested=1,
        isApproved=False,
    )

    assert row["description"] == "About the quote"
    assert row["status"] == "in_progress"
    assert row["priority"] == "high"
    assert row["dueDate"] == 1_760_000_000_000
    assert row["projectId"] == "p1"
    assert row["isAiSuggested"] == 1
    assert row["isApproved"] == 0


def test_project_insert_defaults_to_active(store: LocalStore) -> None:
    assert insert(store, "projects", name="Website")["status"] == "active"


@pytest.mark.parametrize(
    "assignee",
    [["Ana", "Zoë"], '["Ana", "Zoë"]'],
    ids=["list", "json-string"],
)
def test_assignee_is_stored_as_a_compact_json_array_string(
    store: LocalStore, assignee: object
) -> None:
    row = insert(store, "tasks", title="Review", assignee=assignee)

    assert row["assignee"] == '["Ana","Zoë"]'


def test_note_insert_sets_updated_at_to_created_at(store: LocalStore) -> None:
    row = insert(store, "notes", title="Kickoff", content="# Agenda")

    assert row["updatedAt"] == row["createdAt"]
    assert row["content"] == "# Agenda"


@pytest.mark.parametrize("field", ["id", "createdAt", "updatedAt"])
def test_insert_refuses_fields_the_client_generates(store: LocalStore, field: str) -> None:
    result = store.execute(
        action="insert",
        table="notes",
        data={"title": "Kickoff", field: "x" if field == "id" else 1},
    )

    assert field in result["error"]
    assert store.rows("notes") == []


def test_timeline_insert_without_project_id_is_an_error(store: LocalStore) -> None:
    result = store.execute(action="insert", table="timelines", data={"title": "Launch"})

    assert "projectId" in result["error"]
    assert store.rows("timelines") == []


@pytest.mark.parametrize(
    ("table", "data", "mentions"),
    [
        ("tasks", {"title": "T", "colour": "red"}, "colour"),
        ("tasks", {"title": 5}, "title"),
        ("tasks", {"title": None}, "title"),
        ("tasks", {}, "title"),
        ("tasks", {"title": "T", "dueDate": "tomorrow"}, "dueDate"),
        ("tasks", {"title": "T", "dueDate": True}, "dueDate"),
        ("tasks", {"title": "T", "dueDate": 1.5}, "dueDate"),
        ("tasks", {"title": "T", "dueDate": 2**63}, "dueDate"),
        ("tasks", {"title": "T", "status": "blocked"}, "status"),
        ("tasks", {"title": "T", "status": None}, "status"),
        ("tasks", {"title": "T", "priority": "urgent"}, "priority"),
        ("tasks", {"title": "T", "isApproved": 2}, "isApproved"),
        ("tasks", {"title": "T", "isAiSuggested": "yes"}, "isAiSuggested"),
        ("tasks", {"title": "T", "assignee": "Ana"}, "assignee"),
        ("tasks", {"title": "T", "assignee": ["Ana", 3]}, "assignee"),
        ("projects", {"name": "P", "status": "deleted"}, "status"),
        ("taskComments", {"content": "Hi"}, "taskId"),
        ("timelines", {"projectId": "p1", "title": "Launch", "date": "2025-01-01"}, "date"),
    ],
)
def test_insert_with_bad_data_is_an_error_and_stores_nothing(
    store: LocalStore, table: str, data: dict[str, Any], mentions: str
) -> None:
    result = store.execute(action="insert", table=table, data=data)

    assert set(result) == {"error"}
    assert mentions in result["error"]
    assert store.rows(table) == []


# --- get, update, delete ------------------------------------------------------


def test_get_returns_the_row_by_id(store: LocalStore) -> None:
    row = insert(store, "projects", name="Website")

    assert store.execute(action="get", table="projects", data={"id": row["id"]}) == {"row": row}


def test_get_of_a_missing_id_returns_a_null_row(store: LocalStore) -> None:
    assert store.execute(action="get", table="projects", data={"id": "nope"}) == {"row": None}


def test_update_changes_only_the_given_fields(store: LocalStore) -> None:
    before = insert(
        store, "tasks", title="Draft", description="v1", priority="low", dueDate=1_760_000_000_000
    )

    result = store.execute(
        action="update",
        table="tasks",
        data={"id": before["id"], "updates": {"status": "done", "dueDate": None}},
    )

    assert result == {"row": {**before, "status": "done", "dueDate": None}}
    assert store.rows("tasks") == [result["row"]]


def test_update_of_a_note_bumps_updated_at_only(store: LocalStore, clock: FakeClock) -> None:
    note = insert(store, "notes", title="Kickoff", content="v1")
    clock.now = 1_800_000_000_000

    result = store.execute(
        action="update", table="notes", data={"id": note["id"], "updates": {"content": "v2"}}
    )

    assert result["row"] == {**note, "content": "v2", "updatedAt": 1_800_000_000_001}


def test_update_with_no_fields_returns_the_row_unchanged(store: LocalStore) -> None:
    note = insert(store, "notes", title="Kickoff")

    result = store.execute(action="update", table="notes", data={"id": note["id"], "updates": {}})

    assert result == {"row": note}


@pytest.mark.parametrize(
    ("updates", "mentions"),
    [
        ({"colour": "red"}, "colour"),
        ({"title": None}, "title"),
        ({"priority": "urgent"}, "priority"),
        ({"createdAt": 1}, "createdAt"),
        ({"id": "other"}, "id"),
        ("done", "updates"),
    ],
)
def test_update_with_bad_updates_is_an_error_and_changes_nothing(
    store: LocalStore, updates: object, mentions: str
) -> None:
    task = insert(store, "tasks", title="Draft")

    result = store.execute(
        action="update", table="tasks", data={"id": task["id"], "updates": updates}
    )

    assert set(result) == {"error"}
    assert mentions in result["error"]
    assert store.rows("tasks") == [task]


def test_update_without_updates_is_an_error(store: LocalStore) -> None:
    task = insert(store, "tasks", title="Draft")

    result = store.execute(action="update", table="tasks", data={"id": task["id"]})

    assert "updates" in result["error"]


def test_update_of_a_missing_row_is_an_error(store: LocalStore) -> None:
    result = store.execute(
        action="update", table="tasks", data={"id": "nope", "updates": {"status": "done"}}
    )

    assert "nope" in result["error"]


def test_delete_removes_the_row(store: LocalStore) -> None:
    keep = insert(store, "tasks", title="Keep")
    drop = insert(store, "tasks", title="Drop")

    result = store.execute(action="delete", table="tasks", data={"id": drop["id"]})

    assert result == {"deleted": True}
    assert store.rows("tasks") == [keep]


def test_delete_of_a_missing_row_is_an_error(store: LocalStore) -> None:
    result = store.execute(action="delete", table="tasks", data={"id": "nope"})

    assert "nope" in result["error"]


@pytest.mark.parametrize("action", ["get", "update", "delete"])
@pytest.mark.parametrize("data", [None, {}, {"id": ""}, {"id": 7}, ["id"]])
def test_row_actions_without_a_usable_id_are_errors(
    store: LocalStore, action: str, data: Any
) -> None:
    result = store.execute(action=action, table="tasks", data=data)

    assert set(result) == {"error"}


@pytest.mark.parametrize(
    ("action", "table", "mentions"),
    [
        ("select", "users", "users"),
        ("select", None, "table"),
        ("select", "vectors", "vectors"),
        ("drop", "tasks", "drop"),
    ],
)
def test_unknown_action_or_table_is_an_error(
    store: LocalStore, action: str, table: str | None, mentions: str
) -> None:
    result = store.execute(action=action, table=table)

    assert set(result) == {"error"}
    assert mentions in result["error"]


def test_rows_helper_refuses_an_unknown_table(store: LocalStore) -> None:
    with pytest.raises(StoreError, match="users"):
        store.rows("users")


# --- select filters ------------------------------------------------------------


def test_select_without_filters_orders_by_created_at_ascending(
    store: LocalStore, clock: FakeClock
) -> None:
    for title, created_at in [("late", 300), ("early", 100), ("middle", 200)]:
        clock.now = created_at
        insert(store, "tasks", title=title)

    assert titles(select(store, "tasks")) == ["early", "middle", "late"]
    assert titles(store.execute(action="select", table="tasks")["rows"]) == [
        "early",
        "middle",
        "late",
    ]


def test_tasks_filter_by_project_and_status(store: LocalStore) -> None:
    insert(store, "tasks", title="a", projectId="p1", status="todo")
    insert(store, "tasks", title="b", projectId="p1", status="done")
    insert(store, "tasks", title="c", projectId="p2", status="done")

    assert titles(select(store, "tasks", projectId="p1")) == ["a", "b"]
    assert titles(select(store, "tasks", status="done")) == ["b", "c"]
    assert titles(select(store, "tasks", projectId="p1", status="done")) == ["b"]


def test_filters_given_as_null_are_ignored(store: LocalStore) -> None:
    insert(store, "tasks", title="a", projectId="p1")
    insert(store, "tasks", title="b")

    rows = select(store, "tasks", projectId=None, status=None, search=None, orderBy=None)

    assert titles(rows) == ["a", "b"]


def test_task_search_matches_title_or_description_ignoring_case(store: LocalStore) -> None:
    insert(store, "tasks", title="Send INVOICE to Acme")
    insert(store, "tasks", title="Call Bob", description="ask about the invoice")
    insert(store, "tasks", title="Walk the dog", description=None)

    assert titles(select(store, "tasks", search="Invoice")) == [
        "Send INVOICE to Acme",
        "Call Bob",
    ]


def test_task_search_folds_unicode_case_and_treats_wildcards_literally(
    store: LocalStore,
) -> None:
    insert(store, "tasks", title="Visit STRASSE office")
    insert(store, "tasks", title="Ship 100% of the orders")
    insert(store, "tasks", title="Ship all_orders")

    assert titles(select(store, "tasks", search="straße")) == ["Visit STRASSE office"]
    assert titles(select(store, "tasks", search="%")) == ["Ship 100% of the orders"]
    assert titles(select(store, "tasks", search="_")) == ["Ship all_orders"]


def test_due_date_bounds_are_inclusive_and_skip_undated_tasks(store: LocalStore) -> None:
    for title, due in [("d100", 100), ("d200", 200), ("d300", 300), ("undated", None)]:
        insert(store, "tasks", title=title, dueDate=due)

    assert titles(select(store, "tasks", dueDateFrom=200)) == ["d200", "d300"]
    assert titles(select(store, "tasks", dueDateTo=200)) == ["d100", "d200"]
    assert titles(select(store, "tasks", dueDateFrom=200, dueDateTo=200)) == ["d200"]
    assert titles(select(store, "tasks", dueDateFrom=201, dueDateTo=299)) == []


@pytest.fixture
def ordering_tasks(store: LocalStore) -> LocalStore:
    """Tasks whose every orderable column sorts them differently from insertion order."""
    insert(store, "tasks", title="bravo", priority="medium", status="done", dueDate=300)
    insert(store, "tasks", title="Charlie", priority="high", status="todo", dueDate=None)
    insert(store, "tasks", title="alpha", priority="low", status="in_progress", dueDate=100)
    return store


@pytest.mark.parametrize(
    ("order_by", "expected"),
    [
        ("createdAt", ["bravo", "Charlie", "alpha"]),
        ("-createdAt", ["alpha", "Charlie", "bravo"]),
        ("dueDate", ["alpha", "bravo", "Charlie"]),
        ("-dueDate", ["bravo", "alpha", "Charlie"]),
        ("priority", ["alpha", "bravo", "Charlie"]),
        ("-priority", ["Charlie", "bravo", "alpha"]),
        ("title", ["alpha", "bravo", "Charlie"]),
        ("-title", ["Charlie", "bravo", "alpha"]),
        ("status", ["Charlie", "alpha", "bravo"]),
        ("-status", ["bravo", "alpha", "Charlie"]),
    ],
)
def test_tasks_order_by_each_column_in_both_directions(
    ordering_tasks: LocalStore, order_by: str, expected: list[str]
) -> None:
    assert titles(select(ordering_tasks, "tasks", orderBy=order_by)) == expected


def test_order_ties_fall_back_to_creation_order(store: LocalStore) -> None:
    for title in ["first", "second", "third"]:
        insert(store, "tasks", title=title, priority="high")

    assert titles(select(store, "tasks", orderBy="-priority")) == ["first", "second", "third"]


def test_order_combines_with_filters(store: LocalStore) -> None:
    insert(store, "tasks", title="low p1", priority="low", projectId="p1")
    insert(store, "tasks", title="high p2", priority="high", projectId="p2")
    insert(store, "tasks", title="high p1", priority="high", projectId="p1")

    rows = select(store, "tasks", projectId="p1", orderBy="-priority")

    assert titles(rows) == ["high p1", "low p1"]


def test_task_comments_filter_by_task(store: LocalStore) -> None:
    insert(store, "taskComments", taskId="t1", author="Ana", content="first")
    insert(store, "taskComments", taskId="t2", author="Bob", content="other")
    insert(store, "taskComments", taskId="t1", author="Bob", content="second")

    rows = select(store, "taskComments", taskId="t1")

    assert [row["content"] for row in rows] == ["first", "second"]


def test_projects_filter_by_client(store: LocalStore) -> None:
    insert(store, "projects", name="Site", clientId="c1")
    insert(store, "projects", name="App", clientId="c2")

    assert [row["name"] for row in select(store, "projects", clientId="c1")] == ["Site"]


@pytest.mark.parametrize(
    ("include_archived", "expected"),
    [
        ("absent", ["Live"]),
        (None, ["Live"]),
        (False, ["Live"]),
        (True, ["Live", "Old"]),
    ],
)
def test_projects_hide_archived_unless_included(
    store: LocalStore, include_archived: object, expected: list[str]
) -> None:
    insert(store, "projects", name="Live")
    insert(store, "projects", name="Old", status="archived")
    filters = {} if include_archived == "absent" else {"includeArchived": include_archived}

    assert [row["name"] for row in select(store, "projects", **filters)] == expected


@pytest.mark.parametrize("table", ["timelines", "notes"])
def test_timelines_and_notes_filter_by_project(store: LocalStore, table: str) -> None:
    insert(store, table, projectId="p1", title="mine")
    insert(store, table, projectId="p2", title="theirs")

    assert titles(select(store, table, projectId="p1")) == ["mine"]


@pytest.mark.parametrize(
    ("table", "filters", "mentions"),
    [
        ("tasks", {"assignee": "Ana"}, "assignee"),
        ("tasks", {"bogus": None}, "bogus"),
        ("projects", {"orderBy": "name"}, "orderBy"),
        ("clients", {"projectId": "p1"}, "projectId"),
        ("taskComments", {"projectId": "p1"}, "projectId"),
        ("tasks", {"orderBy": "assignee"}, "orderBy"),
        ("tasks", {"orderBy": 1}, "orderBy"),
        ("tasks", {"orderBy": "--dueDate"}, "orderBy"),
        ("tasks", {"status": "blocked"}, "status"),
        ("tasks", {"projectId": 7}, "projectId"),
        ("tasks", {"search": 7}, "search"),
        ("tasks", {"dueDateFrom": "today"}, "dueDateFrom"),
        ("tasks", {"dueDateTo": 1.5}, "dueDateTo"),
        ("projects", {"includeArchived": "yes"}, "includeArchived"),
    ],
)
def test_bad_filters_are_errors(
    store: LocalStore, table: str, filters: dict[str, Any], mentions: str
) -> None:
    result = store.execute(action="select", table=table, filters=filters)

    assert set(result) == {"error"}
    assert mentions in result["error"]


def test_filters_that_are_not_an_object_are_an_error(store: LocalStore) -> None:
    not_an_object: Any = ["projectId"]

    result = store.execute(action="select", table="tasks", filters=not_an_object)

    assert "filters" in result["error"]


# --- vector index -------------------------------------------------------------


def upsert(store: LocalStore, item_id: str, vector: list[float], content: str = "") -> None:
    result = store.execute(
        action="vector_upsert",
        data={"id": item_id, "projectId": "p1", "content": content or item_id},
        vector=vector,
    )
    assert result == {"ok": True}


def test_vector_search_ranks_by_cosine_similarity(store: LocalStore) -> None:
    upsert(store, "east", [1.0, 0.0])
    upsert(store, "north", [0.0, 5.0])
    upsert(store, "north-east", [2.0, 2.0])
    upsert(store, "west", [-1.0, 0.0])

    result = store.execute(action="vector_search", vector=[1.0, 0.2], limit=4)

    assert [hit["id"] for hit in result["results"]] == ["east", "north-east", "north", "west"]
    scores = [hit["score"] for hit in result["results"]]
    assert scores == pytest.approx([0.98058, 0.83205, 0.19612, -0.98058], abs=1e-5)
    assert result["results"][0] == {"id": "east", "content": "east", "score": scores[0]}


def test_vector_search_returns_at_most_limit_results(store: LocalStore) -> None:
    for n in range(12):
        upsert(store, f"item{n}", [1.0, float(n)])

    limited = store.execute(action="vector_search", vector=[1.0, 0.0], limit=3)
    default = store.execute(action="vector_search", vector=[1.0, 0.0])

    assert [hit["id"] for hit in limited["results"]] == ["item0", "item1", "item2"]
    assert len(default["results"]) == 10


def test_vector_upsert_replaces_an_item_with_the_same_id(store: LocalStore) -> None:
    upsert(store, "doc", [1.0, 0.0], content="old")
    upsert(store, "other", [0.6, 0.8])
    upsert(store, "doc", [0.0, 1.0], content="new")

    result = store.execute(action="vector_search", vector=[0.0, 1.0], limit=5)

    assert result["results"][0] == {"id": "doc", "content": "new", "score": pytest.approx(1.0)}
    assert len(result["results"]) == 2


def test_vector_search_on_an_empty_index_finds_nothing(store: LocalStore) -> None:
    assert store.execute(action="vector_search", vector=[1.0], limit=3) == {"results": []}


def test_the_only_vector_may_be_replaced_with_another_dimension(store: LocalStore) -> None:
    upsert(store, "doc", [1.0, 0.0])
    upsert(store, "doc", [1.0, 0.0, 0.0])

    result = store.execute(action="vector_search", vector=[0.0, 0.0, 1.0], limit=1)

    assert result["results"][0]["score"] == pytest.approx(0.0)


@pytest.mark.parametrize(
    ("vector", "mentions"),
    [
        ([0.0, 0.0], "zero vector"),
        ([1.0, 0.0, 0.0], "dimensions"),
        ([], "non-empty"),
        (None, "vector"),
        ([1.0, "x"], "finite numbers"),
        ([1.0, float("nan")], "finite numbers"),
        ([True, False], "finite numbers"),
    ],
)
def test_unusable_vectors_are_errors(
    store: LocalStore, vector: list[float] | None, mentions: str
) -> None:
    upsert(store, "doc", [1.0, 0.0])

    upserted = store.execute(
        action="vector_upsert", data={"id": "new", "projectId": None, "content": "c"}, vector=vector
    )
    searched = store.execute(action="vector_search", vector=vector, limit=3)

    assert mentions in upserted["error"]
    assert mentions in searched["error"]
    assert store.execute(action="vector_search", vector=[1.0, 0.0], limit=5)["results"] == [
        {"id": "doc", "content": "doc", "score": pytest.approx(1.0)}
    ]


@pytest.mark.parametrize("limit", [0, -1, True, 2.5])
def test_vector_search_with_a_bad_limit_is_an_error(store: LocalStore, limit: Any) -> None:
    result = store.execute(action="vector_search", vector=[1.0], limit=limit)

    assert "limit" in result["error"]


@pytest.mark.parametrize(
    ("data", "mentions"),
    [
        ({"projectId": "p1", "content": "c"}, "id"),
        ({"id": "doc", "projectId": "p1"}, "content"),
        ({"id": "doc", "projectId": 3, "content": "c"}, "projectId"),
        (None, "data"),
    ],
)
def test_vector_upsert_with_bad_data_is_an_error(
    store: LocalStore, data: dict[str, Any] | None, mentions: str
) -> None:
    result = store.execute(action="vector_upsert", data=data, vector=[1.0])

    assert mentions in result["error"]


# --- persistence ----------------------------------------------------------------


def test_rows_and_vectors_survive_reopening_the_file(tmp_path: Path) -> None:
    path = tmp_path / "client.sqlite3"
    first = LocalStore(path)
    task = insert(first, "tasks", title="Persist me")
    upsert(first, "doc", [1.0, 0.0])
    first.close()

    reopened = LocalStore(path)
    try:
        assert reopened.rows("tasks") == [task]
        found = reopened.execute(action="vector_search", vector=[1.0, 0.0], limit=1)
        assert [hit["id"] for hit in found["results"]] == ["doc"]
    finally:
        reopened.close()
