"""Note tools: the frames they send, the text they answer and the vector index upkeep."""

from __future__ import annotations

from protocol.frames import ToolCall
from tests.tools.fake_desktop import StoreDesktop, run
from tools.context import turn_context
from tools.notes import create_note, delete_note, get_note, list_notes, update_note


class FakeEmbedder:
    """An embedding model that records what it was asked to embed."""

    def __init__(self, vector: list[float] | None = None, *, fails: bool = False) -> None:
        self.vector = vector
        self.fails = fails
        self.texts: list[str] = []

    async def __call__(self, text: str) -> list[float] | None:
        self.texts.append(text)
        if self.fails:
            msg = "embedding service unreachable"
            raise ConnectionError(msg)
        return self.vector


async def test_list_notes_filters_by_project_and_omits_content(desktop: StoreDesktop) -> None:
    note = desktop.seed("notes", projectId="p1", title="Kickoff", content="# Secret agenda")
    desktop.seed("notes", projectId="p2", title="Elsewhere")

    text = await run(list_notes, project_id="p1")

    assert desktop.sent() == [
        {"action": "select", "table": "notes", "filters": {"projectId": "p1"}}
    ]
    assert text == (
        f"1 note found:\n- Kickoff (id {note['id']}, project p1, updated 2026-11-18 09:30)"
    )


async def test_list_notes_of_every_project_sends_no_filter_keys(desktop: StoreDesktop) -> None:
    assert await run(list_notes) == "No notes found."
    assert desktop.sent() == [{"action": "select", "table": "notes", "filters": {}}]


async def test_get_note_returns_the_full_markdown(desktop: StoreDesktop) -> None:
    note = desktop.seed("notes", title="Kickoff", content="# Agenda\n\n- budget\n- dates")

    with turn_context(timezone="Europe/Berlin"):
        text = await run(get_note, note_id=note["id"])

    assert desktop.sent() == [{"action": "get", "table": "notes", "data": {"id": note["id"]}}]
    assert text == (
        f"Note Kickoff (id {note['id']}, updated 2026-11-18 10:30)\n\n# Agenda\n\n- budget\n- dates"
    )


async def test_get_note_says_when_the_id_is_unknown(desktop: StoreDesktop) -> None:
    assert await run(get_note, note_id="nope") == "No note with id nope exists."


async def test_create_note_without_an_embedder_only_inserts(desktop: StoreDesktop) -> None:
    text = await run(create_note, title="Kickoff", content="# Agenda", project_id="p1")

    [row] = desktop.store.rows("notes")
    assert desktop.sent() == [
        {
            "action": "insert",
            "table": "notes",
            "data": {"projectId": "p1", "title": "Kickoff", "content": "# Agenda"},
        }
    ]
    assert text == (
        f"Created note: Kickoff (id {row['id']}, project p1, updated 2026-11-18 09:30)."
    )


async def test_create_note_with_an_embedder_upserts_its_vector_after_the_insert(
    desktop: StoreDesktop,
) -> None:
    embedder = FakeEmbedder([0.1, 0.2, 0.3])

    with turn_context(embed=embedder):
        text = await run(create_note, title="Kickoff", content="# Agenda", project_id="p1")

    [row] = desktop.store.rows("notes")
    assert embedder.texts == ["# Agenda"]
    assert desktop.sent() == [
        {
            "action": "insert",
            "table": "notes",
            "data": {"projectId": "p1", "title": "Kickoff", "content": "# Agenda"},
        },
        {
            "action": "vector_upsert",
            "data": {"id": row["id"], "projectId": "p1", "content": "# Agenda"},
            "vector": [0.1, 0.2, 0.3],
        },
    ]
    # The desktop's index now finds the note.
    hits = desktop.store.execute(action="vector_search", vector=[0.1, 0.2, 0.3], limit=1)
    assert hits["results"][0]["id"] == row["id"]
    assert text == f"Created note: Kickoff (id {row['id']}, project p1, updated 2026-11-18 09:30)."


async def test_a_failing_embedder_does_not_fail_the_saved_note(desktop: StoreDesktop) -> None:
    with turn_context(embed=FakeEmbedder(fails=True)):
        text = await run(create_note, title="Kickoff", content="# Agenda")

    [row] = desktop.store.rows("notes")
    assert [frame["action"] for frame in desktop.sent()] == ["insert"]
    assert text == (
        f"Created note: Kickoff (id {row['id']}, updated 2026-11-18 09:30)."
        " It is saved but not searchable yet: the embedding failed."
    )


async def test_a_refused_vector_upsert_does_not_fail_the_saved_note(
    desktop: StoreDesktop,
) -> None:
    def refuse_upserts(call: ToolCall) -> dict[str, object]:
        if call.action == "vector_upsert":
            return {"error": "vector index is locked"}
        return desktop.store.execute(action=call.action.value, table=call.table, data=call.data)

    desktop.answer = refuse_upserts

    with turn_context(embed=FakeEmbedder([1.0, 0.0])):
        text = await run(create_note, title="Kickoff", content="# Agenda")

    [row] = desktop.store.rows("notes")
    assert [frame["action"] for frame in desktop.sent()] == ["insert", "vector_upsert"]
    assert text.endswith("It is saved but not searchable yet: vector index is locked")
    assert row["id"] in text


async def test_an_embedder_without_a_vector_and_a_blank_note_skip_the_upsert(
    desktop: StoreDesktop,
) -> None:
    with turn_context(embed=FakeEmbedder(None)):
        await run(create_note, title="Kickoff", content="# Agenda")
    blank = FakeEmbedder([1.0])
    with turn_context(embed=blank):
        await run(create_note, title="Title only")

    assert [frame["action"] for frame in desktop.sent()] == ["insert", "insert"]
    assert desktop.sent()[1]["data"] == {"title": "Title only"}
    assert blank.texts == []


async def test_update_note_sends_only_the_given_fields_and_reindexes_the_stored_note(
    desktop: StoreDesktop,
) -> None:
    note = desktop.seed("notes", projectId="p1", title="Kickoff", content="# Old")
    embedder = FakeEmbedder([0.5, 0.5])

    with turn_context(embed=embedder):
        text = await run(update_note, note_id=note["id"], content="# New")

    assert desktop.sent() == [
        {
            "action": "update",
            "table": "notes",
            "data": {"id": note["id"], "updates": {"content": "# New"}},
        },
        {
            "action": "vector_upsert",
            "data": {"id": note["id"], "projectId": "p1", "content": "# New"},
            "vector": [0.5, 0.5],
        },
    ]
    [row] = desktop.store.rows("notes")
    assert (row["title"], row["content"]) == ("Kickoff", "# New")
    assert text == (
        f"Updated note (content changed): Kickoff (id {note['id']}, project p1,"
        " updated 2026-11-18 09:30)."
    )


async def test_update_note_sends_title_and_project_under_their_columns(
    desktop: StoreDesktop,
) -> None:
    note = desktop.seed("notes", title="Kickoff")

    await run(update_note, note_id=note["id"], title="Kick-off", project_id="p2")

    assert desktop.sent() == [
        {
            "action": "update",
            "table": "notes",
            "data": {"id": note["id"], "updates": {"projectId": "p2", "title": "Kick-off"}},
        }
    ]


async def test_update_note_with_nothing_to_change_calls_neither_desktop_nor_embedder(
    desktop: StoreDesktop,
) -> None:
    embedder = FakeEmbedder([1.0])

    with turn_context(embed=embedder):
        text = await run(update_note, note_id="n1")

    assert text.startswith("Nothing to change: no field was given to update note n1.")
    assert desktop.sent() == []
    assert embedder.texts == []


async def test_a_failed_note_update_is_not_indexed(desktop: StoreDesktop) -> None:
    embedder = FakeEmbedder([1.0])

    with turn_context(embed=embedder):
        text = await run(update_note, note_id="nope", content="# New")

    assert text == "Error: no notes row with id 'nope'"
    assert [frame["action"] for frame in desktop.sent()] == ["update"]
    assert embedder.texts == []


async def test_delete_note_sends_the_id(desktop: StoreDesktop) -> None:
    note = desktop.seed("notes", title="Kickoff")

    text = await run(delete_note, note_id=note["id"])

    assert desktop.sent() == [{"action": "delete", "table": "notes", "data": {"id": note["id"]}}]
    assert text == f"Deleted note {note['id']}."
    assert desktop.store.rows("notes") == []


def test_update_note_tells_the_model_to_read_the_note_first() -> None:
    assert "read the note with get_note first" in update_note.description
    assert "Markdown" in update_note.description
