"""Project tools: the frames they send and the text they answer."""

from __future__ import annotations

from tests.tools.fake_desktop import StoreDesktop, run
from tools.projects import (
    create_project,
    delete_project,
    get_project,
    list_all_projects,
    list_projects,
    update_project,
)


async def test_list_projects_hides_archived_ones_by_default(desktop: StoreDesktop) -> None:
    website = desktop.seed("projects", name="Website", clientId="c1")
    desktop.seed("projects", name="Old site", clientId="c1", status="archived")
    desktop.seed("projects", name="Other client", clientId="c2")

    text = await run(list_projects, client_id="c1")

    assert desktop.sent() == [
        {
            "action": "select",
            "table": "projects",
            "filters": {"clientId": "c1", "includeArchived": False},
        }
    ]
    assert text == f"1 project found:\n- [active] Website (id {website['id']}, client c1)"


async def test_list_projects_can_include_archived_ones(desktop: StoreDesktop) -> None:
    old = desktop.seed("projects", name="Old site", status="archived")

    text = await run(list_projects, include_archived=True)

    assert desktop.sent()[0]["filters"] == {"includeArchived": True}
    assert text == f"1 project found:\n- [archived] Old site (id {old['id']})"


async def test_list_all_projects_includes_archived_ones(desktop: StoreDesktop) -> None:
    active = desktop.seed("projects", name="Website")
    archived = desktop.seed("projects", name="Old site", status="archived")

    text = await run(list_all_projects)

    assert desktop.sent() == [
        {"action": "select", "table": "projects", "filters": {"includeArchived": True}}
    ]
    assert text == (
        "2 projects found:\n"
        f"- [active] Website (id {active['id']})\n"
        f"- [archived] Old site (id {archived['id']})"
    )


async def test_list_projects_says_when_there_are_none(desktop: StoreDesktop) -> None:
    assert await run(list_projects) == "No projects found."


async def test_get_project_shows_the_project_with_its_summary(desktop: StoreDesktop) -> None:
    project = desktop.seed("projects", name="Website", clientId="c1", aiSummary="On track.")

    text = await run(get_project, project_id=project["id"])

    assert desktop.sent() == [{"action": "get", "table": "projects", "data": {"id": project["id"]}}]
    assert text == (
        f"Project [active] Website (id {project['id']}, client c1)\n"
        "Created: 2026-11-18 09:30\n"
        "Summary: On track."
    )


async def test_get_project_says_when_the_id_is_unknown(desktop: StoreDesktop) -> None:
    assert await run(get_project, project_id="nope") == "No project with id nope exists."


async def test_create_project_sends_name_and_client_only(desktop: StoreDesktop) -> None:
    text = await run(create_project, name="Website", client_id="c1")

    [row] = desktop.store.rows("projects")
    assert desktop.sent() == [
        {"action": "insert", "table": "projects", "data": {"name": "Website", "clientId": "c1"}}
    ]
    assert text == f"Created project: [active] Website (id {row['id']}, client c1)."


async def test_create_project_without_a_client_leaves_the_column_out(
    desktop: StoreDesktop,
) -> None:
    await run(create_project, name="Website")

    assert desktop.sent()[0]["data"] == {"name": "Website"}


async def test_update_project_archives_without_touching_other_fields(
    desktop: StoreDesktop,
) -> None:
    project = desktop.seed("projects", name="Website", clientId="c1", aiSummary="On track.")

    text = await run(update_project, project_id=project["id"], status="archived")

    assert desktop.sent() == [
        {
            "action": "update",
            "table": "projects",
            "data": {"id": project["id"], "updates": {"status": "archived"}},
        }
    ]
    [row] = desktop.store.rows("projects")
    assert (row["name"], row["clientId"], row["aiSummary"]) == ("Website", "c1", "On track.")
    assert text == (
        f"Updated project (status changed): [archived] Website (id {project['id']}, client c1)."
    )


async def test_update_project_sends_every_field_under_its_column(desktop: StoreDesktop) -> None:
    project = desktop.seed("projects", name="Website")

    await run(
        update_project,
        project_id=project["id"],
        name="Web shop",
        client_id="c2",
        status="active",
        ai_summary="Scope grew.",
    )

    assert desktop.sent()[0]["data"]["updates"] == {
        "name": "Web shop",
        "clientId": "c2",
        "status": "active",
        "aiSummary": "Scope grew.",
    }


async def test_update_project_with_nothing_to_change_does_not_call_the_desktop(
    desktop: StoreDesktop,
) -> None:
    text = await run(update_project, project_id="p1")

    assert text.startswith("Nothing to change: no field was given to update project p1.")
    assert desktop.sent() == []


async def test_delete_project_sends_the_id(desktop: StoreDesktop) -> None:
    project = desktop.seed("projects", name="Website")

    text = await run(delete_project, project_id=project["id"])

    assert desktop.sent() == [
        {"action": "delete", "table": "projects", "data": {"id": project["id"]}}
    ]
    assert text == f"Deleted project {project['id']}."
    assert desktop.store.rows("projects") == []


def test_delete_project_tells_the_model_to_prefer_archiving() -> None:
    assert "Prefer archiving" in delete_project.description
    assert "explicitly confirmed" in delete_project.description
