"""Markdown note tools of the `note_agent` (SPEC §2), run on the user's desktop.

When the turn context carries an `embed` function, a note that was created or
updated is also put into the desktop's local vector index (`vector_upsert`),
so semantic search finds its current text.
"""

from __future__ import annotations

import logging
from typing import Annotated

from langchain_core.tools import BaseTool
from pydantic import Field

from protocol.errors import ToolCallError
from protocol.frames import ToolAction
from tools._client import Entity, Row, describe, domain_tool
from tools._dates import render_moment
from tools.context import call_desktop, current_turn_context

logger = logging.getLogger(__name__)

NoteId = Annotated[str, Field(description="The note's id, as list_notes shows it.")]
NoteContent = Annotated[str | None, Field(description="The note's body in Markdown.")]
NoteProject = Annotated[
    str | None, Field(description="Id of the project the note belongs to; omit for none/unchanged.")
]


def _note_line(row: Row) -> str:
    project = row.get("projectId")
    return describe(
        str(row.get("title")),
        row,
        f"project {project}" if project else None,
        f"updated {render_moment(row.get('updatedAt'))}",
    )


def _note_detail(row: Row) -> str:
    return f"Note {_note_line(row)}\n\n{row.get('content') or '(empty)'}"


NOTES = Entity(table="notes", noun="note", plural="notes", line=_note_line)


def _note_columns(title: str | None, content: str | None, project_id: str | None) -> Row:
    """The desktop's columns for the arguments create and update share (None: not given)."""
    return {"projectId": project_id, "title": title, "content": content}


async def _index_note(row: Row) -> str:
    """Upsert the saved note's embedding; a failure only adds a remark, the note is saved."""
    embed = current_turn_context().embed
    content = row.get("content")
    # Blank text has nothing to find, and embedding APIs reject empty input.
    if embed is None or not isinstance(content, str) or not content.strip():
        return ""
    try:
        vector = await embed(content)
    except Exception:
        # Any failure of the embedding model (network, quota, bad reply) must not
        # undo or hide the note the user's desktop has already saved.
        logger.warning("embedding note %s failed", row.get("id"), exc_info=True)
        return "It is saved but not searchable yet: the embedding failed."
    if vector is None:
        return ""
    try:
        await call_desktop(
            ToolAction.VECTOR_UPSERT,
            data={"id": row.get("id"), "projectId": row.get("projectId"), "content": content},
            vector=vector,
        )
    except ToolCallError as exc:
        return f"It is saved but not searchable yet: {exc}"
    return ""


@domain_tool
async def list_notes(
    project_id: Annotated[
        str | None, Field(description="Only notes of the project with this id.")
    ] = None,
) -> str:
    """List the user's notes (titles and ids, not their content); use get_note to read one."""
    return await NOTES.select({"projectId": project_id})


@domain_tool
async def get_note(note_id: NoteId) -> str:
    """Read one note in full: title, project, last update and its Markdown content."""
    return await NOTES.show(note_id, _note_detail)


@domain_tool
async def create_note(
    title: Annotated[str, Field(min_length=1, description="The note's title.")],
    content: NoteContent = None,
    project_id: NoteProject = None,
) -> str:
    """Create a note and return it with its new id. Write the content in Markdown."""
    return await NOTES.create(_note_columns(title, content, project_id), then=_index_note)


@domain_tool
async def update_note(
    note_id: NoteId,
    title: Annotated[str | None, Field(description="New title.")] = None,
    content: Annotated[
        str | None,
        Field(description="The complete new Markdown body; it replaces the old one entirely."),
    ] = None,
    project_id: NoteProject = None,
) -> str:
    """Change a note. Only the fields you pass change; everything omitted stays as it is.

    content replaces the whole body, so read the note with get_note first and
    send the full edited Markdown, keeping every part the user did not ask to
    change; nothing is lost that way.
    """
    return await NOTES.update(note_id, _note_columns(title, content, project_id), then=_index_note)


@domain_tool
async def delete_note(note_id: NoteId) -> str:
    """Delete a note permanently."""
    return await NOTES.delete(note_id)


NOTE_TOOLS: list[BaseTool] = [list_notes, get_note, create_note, update_note, delete_note]
