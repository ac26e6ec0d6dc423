"""Project tools of the `project_agent` (SPEC §2), run on the user's desktop."""

from __future__ import annotations

from typing import Annotated, Literal

from langchain_core.tools import BaseTool
from pydantic import Field

from tools._client import Entity, Row, describe, domain_tool
from tools._dates import render_moment

ProjectStatus = Literal["active", "archived"]

ProjectId = Annotated[str, Field(description="The project's id, as list_projects shows it.")]
ClientId = Annotated[str | None, Field(description="Id of the client the project is for.")]


def _project_line(row: Row) -> str:
    client = row.get("clientId")
    return describe(
        f"[{row.get('status')}] {row.get('name')}", row, f"client {client}" if client else None
    )


def _project_detail(row: Row) -> str:
    lines = [
        f"Project {_project_line(row)}",
        f"Created: {render_moment(row.get('createdAt'))}",
    ]
    summary = row.get("aiSummary")
    lines.append(f"Summary: {summary}" if summary else "Summary: none yet")
    return "\n".join(lines)


PROJECTS = Entity(table="projects", noun="project", plural="projects", line=_project_line)


@domain_tool
async def list_projects(
    client_id: Annotated[
        str | None, Field(description="Only projects of the client with this id.")
    ] = None,
    include_archived: Annotated[
        bool, Field(description="Also list archived projects (hidden by default).")
    ] = False,
) -> str:
    """List the user's projects, active ones only unless include_archived is true."""
    return await PROJECTS.select({"clientId": client_id, "includeArchived": include_archived})


@domain_tool
async def list_all_projects() -> str:
    """List every project of the user, archived ones included, each with its status and id."""
    return await PROJECTS.select({"includeArchived": True})


@domain_tool
async def get_project(project_id: ProjectId) -> str:
    """Show one project in full: status, client, creation date and its AI summary."""
    return await PROJECTS.show(project_id, _project_detail)


@domain_tool
async def create_project(
    name: Annotated[str, Field(min_length=1, description="The project's name.")],
    client_id: ClientId = None,
) -> str:
    """Create an active project and return it with its new id."""
    return await PROJECTS.create({"name": name, "clientId": client_id})


@domain_tool
async def update_project(
    project_id: ProjectId,
    name: Annotated[str | None, Field(description="New name.")] = None,
    client_id: ClientId = None,
    status: Annotated[
        ProjectStatus | None,
        Field(description="archived to archive a finished project, active to restore it."),
    ] = None,
    ai_summary: Annotated[
        str | None, Field(description="A new short summary of the project's state.")
    ] = None,
) -> str:
    """Change a project. Only the fields you pass change; everything omitted stays as it is.

    Archive a project (status archived) rather than deleting it.
    """
    return await PROJECTS.update(
        project_id,
        {"name": name, "clientId": client_id, "status": status, "aiSummary": ai_summary},
    )


@domain_tool
async def delete_project(project_id: ProjectId) -> str:
    """Delete a project permanently.

    Prefer archiving (update_project with status archived). Delete only when the
    user has explicitly confirmed they want this project deleted for good.
    """
    return await PROJECTS.delete(project_id)


PROJECT_TOOLS: list[BaseTool] = [
    list_projects,
    list_all_projects,
    get_project,
    create_project,
    update_project,
    delete_project,
]
