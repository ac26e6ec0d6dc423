"""`update_core_memory`: the supervisors' tool for lasting user preferences."""

from __future__ import annotations

from typing import Annotated

from langchain_core.tools import tool
from pydantic import Field

from tools.context import current_turn_context


@tool
async def update_core_memory(
    key: Annotated[
        str,
        Field(
            min_length=1,
            max_length=100,
            # Each key gets its own URL (DELETE /memory/core/{key}): no slash, and not
            # "." or "..", which clients resolve away before the request is sent.
            pattern=r"^\w[\w .-]*$",
            description="Short snake_case name, e.g. timezone, preferred_language, work_hours.",
        ),
    ],
    value: Annotated[str, Field(min_length=1, max_length=2000, description="What to remember.")],
) -> str:
    """Remember a lasting preference of the user (replaces the value stored under `key`).

    Use it when the user states how they want things from now on, e.g. "remember my
    time zone is Europe/Berlin" -> key "timezone", value "Europe/Berlin".
    """
    writer = current_turn_context().remember
    if writer is None:
        return "Memory is not available in this conversation; nothing was stored."
    try:
        await writer(key, value)
    except Exception:  # a tool never raises into the graph
        return "Storing that preference failed; tell the user it was not remembered."
    return f"Remembered {key}."
