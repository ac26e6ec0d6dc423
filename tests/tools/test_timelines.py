"""Timeline (milestone) tools: the frames they send and the text they answer."""

from __future__ import annotations

from tests.tools.fake_desktop import StoreDesktop, ms, run
from tools.context import turn_context
from tools.timelines import create_timeline, delete_timeline, list_timelines, update_timeline


async def test_list_timelines_filters_by_project(desktop: StoreDesktop) -> None:
    launch = desktop.seed(
        "timelines", projectId="p1", title="Launch", date=ms("2026-11-26T23:00:00+00:00")
    )
    undated = desktop.seed("timelines", projectId="p1", title="Retrospective")
    desktop.seed("timelines", projectId="p2", title="Elsewhere")

    with turn_context(timezone="Europe/Berlin"):
        text = await run(list_timelines, project_id="p1")

    assert desktop.sent() == [
        {"action": "select", "table": "timelines", "filters": {"projectId": "p1"}}
    ]
    assert text == (
        "2 milestones found:\n"
        f"- 2026-11-27: Launch (id {launch['id']}, project p1)\n"
        f"- no date: Retrospective (id {undated['id']}, project p1)"
    )


async def test_list_timelines_of_every_project_sends_no_filter_keys(
    desktop: StoreDesktop,
) -> None:
    assert await run(list_timelines) == "No milestones found."
    assert desktop.sent() == [{"action": "select", "table": "timelines", "filters": {}}]


async def test_create_timeline_converts_the_date_in_the_users_zone(desktop: StoreDesktop) -> None:
    with turn_context(timezone="Europe/Berlin"):
        text = await run(
            create_timeline,
            project_id="p1",
            title="Launch",
            date="2026-07-01",
            is_ai_suggested=True,
        )

    [row] = desktop.store.rows("timelines")
    assert desktop.sent() == [
        {
            "action": "insert",
            "table": "timelines",
            "data": {
                "projectId": "p1",
                "title": "Launch",
                # Summer time in Berlin is UTC+2.
                "date": ms("2026-06-30T22:00:00+00:00"),
                "isAiSuggested": 1,
                "isApproved": 0,
            },
        }
    ]
    assert text == (
        f"Created milestone: 2026-07-01: Launch (id {row['id']}, project p1,"
        " AI-suggested, awaiting approval)."
    )


async def test_create_timeline_asked_for_by_the_user_is_approved_and_may_lack_a_date(
    desktop: StoreDesktop,
) -> None:
    await run(create_timeline, project_id="p1", title="Launch")

    assert desktop.sent()[0]["data"] == {
        "projectId": "p1",
        "title": "Launch",
        "isAiSuggested": 0,
        "isApproved": 1,
    }


async def test_create_timeline_without_a_project_is_refused_before_any_call(
    desktop: StoreDesktop,
) -> None:
    text = await run(create_timeline, title="Launch")

    assert text == "Error: invalid arguments: project_id: Field required"
    assert desktop.sent() == []


async def test_update_timeline_sends_only_the_given_fields(desktop: StoreDesktop) -> None:
    milestone = desktop.seed("timelines", projectId="p1", title="Launch", isApproved=0)

    with turn_context(timezone="Europe/Berlin"):
        text = await run(
            update_timeline, timeline_id=milestone["id"], date="2026-12-01T09:00", is_approved=True
        )

    assert desktop.sent() == [
        {
            "action": "update",
            "table": "timelines",
            "data": {
                "id": milestone["id"],
                "updates": {"date": ms("2026-12-01T08:00:00+00:00"), "isApproved": 1},
            },
        }
    ]
    assert text == (
        f"Updated milestone (date, isApproved changed): 2026-12-01 09:00: Launch"
        f" (id {milestone['id']}, project p1)."
    )


async def test_update_timeline_sends_title_project_and_flag(desktop: StoreDesktop) -> None:
    milestone = desktop.seed("timelines", projectId="p1", title="Launch")

    await run(
        update_timeline,
        timeline_id=milestone["id"],
        title="Go-live",
        project_id="p2",
        is_ai_suggested=False,
    )

    assert desktop.sent()[0]["data"]["updates"] == {
        "projectId": "p2",
        "title": "Go-live",
        "isAiSuggested": 0,
    }


async def test_update_timeline_with_nothing_to_change_does_not_call_the_desktop(
    desktop: StoreDesktop,
) -> None:
    text = await run(update_timeline, timeline_id="m1")

    assert text.startswith("Nothing to change: no field was given to update milestone m1.")
    assert desktop.sent() == []


async def test_delete_timeline_sends_the_id(desktop: StoreDesktop) -> None:
    milestone = desktop.seed("timelines", projectId="p1", title="Launch")

    text = await run(delete_timeline, timeline_id=milestone["id"])

    assert desktop.sent() == [
        {"action": "delete", "table": "timelines", "data": {"id": milestone["id"]}}
    ]
    assert text == f"Deleted milestone {milestone['id']}."
    assert desktop.store.rows("timelines") == []
