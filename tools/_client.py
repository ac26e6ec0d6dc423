"""What every domain tool shares: the tool wrapper, desktop calls by table, row text.

A domain tool is an async function returning text, turned into a LangChain
tool by `domain_tool`. It reaches the user's desktop through an `Entity` (one
table of the desktop's database), which sends exactly the SPEC §4 frames and
words the result. Failures never raise into the graph: a `ToolCallError` from
the desktop, a `ToolInputError` for an unusable argument and invalid arguments
all come back to the model as a tool message starting with "Error:" (with the
message status "error").
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any

from langchain_core.tools import BaseTool, StructuredTool, ToolException
from langchain_core.tools.base import create_schema_from_function
from pydantic import Field, ValidationError
from pydantic.v1 import ValidationError as ValidationErrorV1

from protocol.errors import ToolCallError
from protocol.frames import ToolAction
from tools.context import call_desktop

logger = logging.getLogger(__name__)

Row = dict[str, Any]
AfterWrite = Callable[[Row], Awaitable[str]]
"""Runs after a successful insert or update with the stored row; returns a note for the answer."""

MAX_LISTED = 50
"""Rows shown in one list answer: more would cost tokens on every later model call."""


class ToolInputError(ToolException):
    """An argument the model gave cannot be used; the message says how to fix it."""


def _error_text(error: ToolException) -> str:
    return f"Error: {error}"


def _invalid_arguments_text(error: ValidationError | ValidationErrorV1) -> str:
    problems = "; ".join(
        f"{'.'.join(str(part) for part in problem['loc']) or 'arguments'}: {problem['msg']}"
        for problem in error.errors()
    )
    return f"Error: invalid arguments: {problems}"


def domain_tool(run: Callable[..., Awaitable[str]]) -> BaseTool:
    """Make an async function a LangChain tool that answers errors as text.

    The function's name is the tool's name, its docstring the description the
    model reads, and its annotated parameters (with pydantic `Field`
    descriptions) the argument schema.
    """
    if not run.__doc__:
        msg = f"tool {run.__name__} needs a docstring: it is the description the model reads"
        raise TypeError(msg)

    @functools.wraps(run)
    async def guarded(**arguments: Any) -> str:
        try:
            return await run(**arguments)
        except ToolCallError as exc:
            # Offline, time-out, a refused call: the model should tell the user or
            # retry, so it becomes the tool's answer instead of failing the turn.
            logger.info("tool %s failed: %s", run.__name__, exc)
            raise ToolException(str(exc)) from exc

    return StructuredTool.from_function(
        coroutine=guarded,
        # cleandoc, not LangChain's dedent: a docstring's first line has no indent,
        # so dedent would leave the rest of the description indented.
        description=inspect.cleandoc(run.__doc__),
        args_schema=create_schema_from_function(run.__name__, run),
        handle_tool_error=_error_text,
        handle_validation_error=_invalid_arguments_text,
    )


def given(fields: Mapping[str, object]) -> dict[str, object]:
    """The fields whose value is not None: None always means "not given"."""
    return {name: value for name, value in fields.items() if value is not None}


def flag(value: bool | None) -> int | None:
    """A boolean argument as the desktop's 0/1 column (None stays "not given")."""
    return None if value is None else int(value)


AiSuggested = Annotated[
    bool,
    Field(description="True only for an item you propose on your own, not one the user asked for."),
]
ApprovedOnCreate = Annotated[
    bool | None,
    Field(
        description=(
            "Whether the user has approved it. Usually omit it: what the user asked for is"
            " approved, your own suggestion awaits their approval."
        )
    ),
]
AiSuggestedChange = Annotated[
    bool | None, Field(description="Mark (true) or unmark (false) it as your own suggestion.")
]
ApprovedChange = Annotated[
    bool | None, Field(description="true once the user confirms a suggestion; false to revoke.")
]


def suggestion_flags(*, is_ai_suggested: bool, is_approved: bool | None) -> dict[str, object]:
    """The 0/1 columns of a new item; a suggestion awaits approval unless told otherwise."""
    approved = not is_ai_suggested if is_approved is None else is_approved
    return {"isAiSuggested": int(is_ai_suggested), "isApproved": int(approved)}


def suggestion_changes(*, is_ai_suggested: bool | None, is_approved: bool | None) -> Row:
    """The 0/1 columns an update sets: only those given."""
    return {"isAiSuggested": flag(is_ai_suggested), "isApproved": flag(is_approved)}


def describe(label: str, row: Row, *details: str | None) -> str:
    """One line for a row: its label, then its id and whichever details are present."""
    parts = [f"id {row.get('id')}", *(detail for detail in details if detail)]
    return f"{label} ({', '.join(parts)})"


def suggestion_state(row: Row) -> str | None:
    """Say when an item was proposed by the assistant or still awaits the user's approval."""
    states = []
    if row.get("isAiSuggested") == 1:
        states.append("AI-suggested")
    if row.get("isApproved") == 0:
        states.append("awaiting approval")
    return ", ".join(states) or None


@dataclass(frozen=True, slots=True)
class Entity:
    """One table of the desktop's database, as the tools read and write it.

    Each method sends one SPEC §4 `tool_call` and returns the answer text:
    `line` renders a row in one line with its id.
    """

    table: str
    noun: str
    plural: str
    line: Callable[[Row], str]

    def count(self, number: int) -> str:
        return f"{number} {self.noun if number == 1 else self.plural}"

    async def select(self, filters: Mapping[str, object], *, scope: str = "found") -> str:
        """List the rows matching the given filters (None-valued filters are left out)."""
        # An empty filters object, rather than none, so the desktop can always read keys from it.
        result = await call_desktop(ToolAction.SELECT, self.table, filters=given(filters))
        rows: list[Row] = result.get("rows") or []
        if not rows:
            return f"No {self.plural} {scope}."
        lines = [f"{self.count(len(rows))} {scope}:"]
        lines += [f"- {self.line(row)}" for row in rows[:MAX_LISTED]]
        if len(rows) > MAX_LISTED:
            lines.append(f"… and {len(rows) - MAX_LISTED} more not shown; narrow the filters.")
        return "\n".join(lines)

    async def show(self, row_id: str, detail: Callable[[Row], str]) -> str:
        """One row in full, rendered by `detail`."""
        result = await call_desktop(ToolAction.GET, self.table, data={"id": row_id})
        row: Row | None = result.get("row")
        return self._missing(row_id) if row is None else detail(row)

    async def create(self, data: Mapping[str, object], *, then: AfterWrite | None = None) -> str:
        """Insert the given fields; the desktop adds id and timestamps, so they are never sent."""
        result = await call_desktop(ToolAction.INSERT, self.table, data=given(data))
        row: Row | None = result.get("row")
        if row is None:
            return f"Created the {self.noun}, but the desktop app did not return its id."
        return await self._written(f"Created {self.noun}: {self.line(row)}.", row, then)

    async def update(
        self, row_id: str, updates: Mapping[str, object], *, then: AfterWrite | None = None
    ) -> str:
        """Change only the given fields; with none given, nothing is sent."""
        changes = given(updates)
        if not changes:
            return (
                f"Nothing to change: no field was given to update {self.noun} {row_id}."
                " Pass only the fields that should change."
            )
        result = await call_desktop(
            ToolAction.UPDATE, self.table, data={"id": row_id, "updates": changes}
        )
        row: Row | None = result.get("row")
        if row is None:
            return self._missing(row_id)
        text = f"Updated {self.noun} ({', '.join(changes)} changed): {self.line(row)}."
        return await self._written(text, row, then)

    async def delete(self, row_id: str) -> str:
        await call_desktop(ToolAction.DELETE, self.table, data={"id": row_id})
        return f"Deleted {self.noun} {row_id}."

    def _missing(self, row_id: str) -> str:
        return f"No {self.noun} with id {row_id} exists."

    @staticmethod
    async def _written(text: str, row: Row, then: AfterWrite | None) -> str:
        if then is None:
            return text
        note = await then(row)
        return f"{text} {note}" if note else text
