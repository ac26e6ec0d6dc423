"""Timeline (milestone) tools of the `timeline_agent` (SPEC §2), run on the user's desktop."""

from __future__ import annotations

from typing import Annotated

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
from tools._dates import parse_moment, render_moment

TimelineId = Annotated[str, Field(description="The milestone's id, as list_timelines shows it.")]
MilestoneDate = Annotated[
    str | None,
    Field(
        description=(
            "The milestone's date in ISO 8601 in the user's time zone: a date (2026-11-27)"
            " means the start of that day; add a time if it has one (2026-11-27T17:00)."
        )
    ),
]


def _timeline_line(row: Row) -> str:
    date = row.get("date")
    return describe(
        f"{render_moment(date) if date is not None else 'no date'}: {row.get('title')}",
        row,
        f"project {row.get('projectId')}",
        suggestion_state(row),
    )


def _timeline_columns(title: str | None, date: str | None, project_id: str | None) -> Row:
    """The desktop's columns for the arguments create and update share (None: not given)."""
    return {"projectId": project_id, "title": title, "date": parse_moment(date, argument="date")}


TIMELINES = Entity(table="timelines", noun="milestone", plural="milestones", line=_timeline_line)


@domain_tool
async def list_timelines(
    project_id: Annotated[
        str | None, Field(description="Only milestones of the project with this id.")
    ] = None,
) -> str:
    """List project milestones (timeline entries) with their dates and ids."""
    return await TIMELINES.select({"projectId": project_id})


@domain_tool
async def create_timeline(
    project_id: Annotated[
        str, Field(min_length=1, description="Id of the project the milestone belongs to.")
    ],
    title: Annotated[str, Field(min_length=1, description="What is reached at this milestone.")],
    date: MilestoneDate = None,
    is_ai_suggested: AiSuggested = False,
    is_approved: ApprovedOnCreate = None,
) -> str:
    """Add a milestone to a project's timeline and return it with its new id.

    Milestones mark project progress (a delivery, a launch); they are not
    calendar events or meetings.
    """
    return await TIMELINES.create(
        {
            **_timeline_columns(title, date, project_id),
            **suggestion_flags(is_ai_suggested=is_ai_suggested, is_approved=is_approved),
        }
    )


@domain_tool
async def update_timeline(
    timeline_id: TimelineId,
    title: Annotated[str | None, Field(description="New title.")] = None,
    date: MilestoneDate = None,
    project_id: Annotated[
        str | None, Field(description="Id of the project to move the milestone to.")
    ] = None,
    is_ai_suggested: AiSuggestedChange = None,
    is_approved: ApprovedChange = None,
) -> str:
    """Change a milestone. Only the fields you pass change; everything omitted stays as it is."""
    return await TIMELINES.update(
        timeline_id,
        {
            **_timeline_columns(title, date, project_id),
            **suggestion_changes(is_ai_suggested=is_ai_suggested, is_approved=is_approved),
        },
    )


@domain_tool
async def delete_timeline(timeline_id: TimelineId) -> str:
    """Delete a milestone from its project's timeline permanently."""
    return await TIMELINES.delete(timeline_id)


TIMELINE_TOOLS: list[BaseTool] = [list_timelines, create_timeline, update_timeline, delete_timeline]
