"""`update_core_memory`: the supervisors' tool for lasting user preferences."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Annotated

from langchain_core.tools import tool
from pydantic import Field

CoreMemoryWriter = Callable[[str, str], Awaitable[None]]

_writer: ContextVar[CoreMemoryWriter | None] = ContextVar("core_memory_writer", default=None)


@contextmanager
def core_memory_writes_to(writer: CoreMemoryWriter) -> Iterator[None]:
    """Bind where `update_core_memory` stores, for one turn (the user's encrypted memory)."""
    token = _writer.set(writer)
    try:
        yield
    finally:
        _writer.reset(token)


@tool
async def update_core_memory(
    key: Annotated[
        str,
        Field(
            min_length=1,
            max_length=100,
            description="Short snake_case name, e.g. timezone, preferred_language, work_hours.",
        ),
    ],
    value: Annotated[str, Field(min_length=1, max_length=2000, description="What to remember.")],
) -> str:
    """Remember a lasting preference of the user (replaces the value stored under `key`).

    Use it when the user states how they want things from now on, e.g. "remember my
    time zone is Europe/Berlin" -> key "timezone", value "Europe/Berlin".
    """
    writer = _writer.get()
    if writer is None:
        return "Memory is not available in this conversation; nothing was stored."
    try:
        await writer(key, value)
    except Exception:  # a tool never raises into the graph
        return "Storing that preference failed; tell the user it was not remembered."
    return f"Remembered {key}."
