"""Batch agents end to end: the real server, devclient reading real files, a scripted model.

Agents are created over REST; the devclient answers `agent_run` from a
temporary folder it shares and its tool calls from its SQLite database; every
extraction goes through LiteLLM to the scripted OpenAI-compatible server.
The scheduler's own loop is slowed down here; tests run its passes directly.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text

from app.batch.scheduled import BatchScheduler
from app.core.settings import Settings
from devclient.agent_files import SharedFolders
from devclient.client import DeviceClient, Frame, tool_result_payload
from tests.e2e.conftest import Account, Live, running
from tests.e2e.test_observability import sample
from tests.e2e.test_usage import usage_rows
from tests.llm.extraction import ExtractionScript, file_asked
from tests.llm.scripted_openai import scripted_llm
from tests.memory.test_memory_service import dump_database

# The loop never fires during a test (tests run passes themselves). The tests poll the
# run log every 50 ms, far past the free plan's 20 requests a minute.
BATCH_DEFAULTS: dict[str, Any] = {
    "batch_scheduler_interval_s": 3600.0,
    "batch_stale_run_s": 7200.0,
    "batch_idle_timeout_s": 10.0,
    "rate_limit_free": 100_000,
}
RUN_TIMEOUT_S = 20.0


@pytest.fixture
def live_settings() -> dict[str, Any]:
    return dict(BATCH_DEFAULTS)


class Batch(Live):
    script: ExtractionScript

    @property
    def scheduler(self) -> BatchScheduler:
        scheduler: BatchScheduler = self.app.state.batch_scheduler
        return scheduler

    async def http(self, method: str, path: str, token: str, **kwargs: Any) -> httpx.Response:
        async with httpx.AsyncClient(base_url=self.base_url, timeout=30) as http:
            return await http.request(
                method, path, headers={"Authorization": f"Bearer {token}"}, **kwargs
            )

    async def create_agent(self, account: Account, folder: Path, **fields: Any) -> dict[str, Any]:
        body = {
            "name": "Client folders",
            "device_id": "desk",
            "directory_paths": [str(folder)],
            "file_extensions": [".md", ".txt"],
            "data_types": ["tasks", "notes", "timelines", "projects"],
            "prompt_template": "Find what I promised clients.",
            "schedule_cron": "0 9 * * 1",
            "timezone": "Europe/Berlin",
            **fields,
        }
        response = await self.http("POST", "/api/v1/agents/local", account.token, json=body)
        assert response.status_code == 201, response.text
        agent: dict[str, Any] = response.json()
        return agent

    async def shared_desktop(
        self, account: Account, folder: Path, device_id: str = "desk", **options: Any
    ) -> DeviceClient:
        return await self.desktop(
            account, device_id, shared_folders=SharedFolders([folder]), **options
        )

    async def ready(
        self, folder: Path, **fields: Any
    ) -> tuple[Account, DeviceClient, dict[str, Any]]:
        """A new account, its desktop sharing `folder`, and an agent over that folder."""
        account = await self.account()
        client = await self.shared_desktop(account, folder)
        return account, client, await self.create_agent(account, folder, **fields)

    async def run_now(self, account: Account, agent_id: str) -> str:
        response = await self.http("POST", f"/api/v1/agents/{agent_id}/run", account.token)
        assert response.status_code == 202, response.text
        assert response.json()["ok"] is True
        return str(response.json()["run_id"])

    async def held_run(self, folder: Path) -> tuple[Account, HeldRuns, str]:
        """A ready account and agent, and one of its runs started and held on the desktop
        (`held.client`)."""
        account, client, agent = await self.ready(folder)
        held = client.on_agent_run = HeldRuns(client)
        run_id = await self.run_now(account, agent["id"])
        await self.until(lambda: bool(held.started))
        return account, held, run_id

    async def runs(self, account: Account, agent_id: str | None = None) -> list[dict[str, Any]]:
        params = {"agent_id": agent_id} if agent_id else {}
        response = await self.http("GET", "/api/v1/agents/runs", account.token, params=params)
        assert response.status_code == 200, response.text
        items: list[dict[str, Any]] = response.json()["items"]
        return items

    async def finished(self, account: Account, run_id: str) -> dict[str, Any]:
        """The run's log row once it has ended."""
        async with asyncio.timeout(RUN_TIMEOUT_S):
            while True:
                [run] = [r for r in await self.runs(account) if r["id"] == run_id]
                if run["status"] != "running":
                    return run
                await asyncio.sleep(0.05)

    async def sql(self, statement: str, **params: Any) -> list[Any]:
        async with self.app.state.engine.begin() as conn:
            result = await conn.execute(text(statement), params)
            return list(result) if result.returns_rows else []


@pytest.fixture
async def batch(
    assistant_settings: Callable[[str], Settings], tmp_path: Path
) -> AsyncIterator[Batch]:
    server = Batch(base_url="", app=FastAPI(), tmp_path=tmp_path)
    server.script = ExtractionScript()
    async with scripted_llm(server.script) as llm:
        server.llm = llm
        async with running(assistant_settings(llm.api_base), server):
            yield server


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    shared = tmp_path / "shared"
    (shared / "clients").mkdir(parents=True)
    (shared / "acme.md").write_text("# ACME\nSend the invoice by Friday.\n")
    (shared / "clients" / "bob.txt").write_text("Call Bob about the launch.\n")
    (shared / "slides.pdf").write_text("not an agent file type")
    return shared


def asked_files(batch: Batch) -> list[str]:
    assert batch.llm is not None
    return sorted(file_asked(request) for request in batch.llm.requests)


async def next_error(client: DeviceClient) -> Frame:
    """The next `error` frame of the general inbox (batch runs put their frames there too)."""
    while (frame := await client.next_frame())["type"] != "error":
        pass
    return frame


def calls(client: DeviceClient, action: str) -> list[Frame]:
    return [call for call in client.tool_calls if call["action"] == action]


async def stay_silent(run: Frame) -> None:
    """An `on_agent_run` hook for a desktop that never answers a run."""


class HeldRuns:
    """An `on_agent_run` hook that answers each run with its files once `release` is set."""

    def __init__(self, client: DeviceClient) -> None:
        self.client = client
        self.release = asyncio.Event()
        self.started: list[str] = []

    async def __call__(self, run: Frame) -> None:
        self.started.append(run["run_id"])
        await self.release.wait()
        for frame in await self.client.run_frames(run):
            await self.client.send_json(frame)


# -- a full run ------------------------------------------------------------------------


async def test_a_run_turns_files_into_unapproved_suggestions_in_the_desktop_database(
    batch: Batch, folder: Path
) -> None:
    account = await batch.account()
    client = await batch.shared_desktop(account, folder)
    website = client.store.execute(action="insert", table="projects", data={"name": "Website"})
    website_id = website["row"]["id"]
    agent = await batch.create_agent(account, folder)
    batch.script.items["acme.md"] = {
        "tasks": [
            {"title": "Send the invoice", "due_date": "2026-12-04", "project": website_id},
            {"title": "Check the logo", "priority": "high", "project": "website"},
        ],
        "notes": [{"title": "ACME", "content": "Pays late.", "project": None}],
        "milestones": [{"title": "Launch", "date": "2027-01-15", "project": website_id}],
        "projects": [{"name": "ACME retainer"}],
    }
    batch.script.items["bob.txt"] = {
        "tasks": [{"title": "Call Bob", "project": "ACME retainer"}],
    }

    run_id = await batch.run_now(account, agent["id"])
    run = await batch.finished(account, run_id)

    assert (run["status"], run["errors"], run["trigger"]) == ("success", [], "manual")
    assert (run["items_processed"], run["items_created"]) == (2, 6)
    [agent_run] = client.agent_runs
    assert agent_run["run_id"] == run_id
    assert agent_run["config"] == {
        "paths": [str(folder)],
        "file_extensions": [".md", ".txt"],
        "prompt_template": "Find what I promised clients.",
        "data_types": ["notes", "projects", "tasks", "timelines"],
    }
    tasks = {row["title"]: row for row in client.store.rows("tasks")}
    [retainer] = [p for p in client.store.rows("projects") if p["name"] == "ACME retainer"]
    assert tasks["Send the invoice"]["projectId"] == website_id
    # Friday 4 December 2026, midnight in the agent's zone (Berlin, UTC+1).
    assert tasks["Send the invoice"]["dueDate"] == 1796338800000
    assert tasks["Check the logo"]["projectId"] == website_id  # named, any case
    assert tasks["Call Bob"]["projectId"] == retainer["id"]  # created by this run
    for row in [*tasks.values(), retainer, *client.store.rows("notes")]:
        assert (row["isAiSuggested"], row["isApproved"]) == (1, 0), row
    assert {row["status"] for row in tasks.values()} == {"todo"}
    [milestone] = client.store.rows("timelines")
    assert (milestone["title"], milestone["projectId"]) == ("Launch", website_id)
    assert (milestone["isAiSuggested"], milestone["isApproved"]) == (1, 0)
    # One select of projects for the whole run; every insert carries the run, not a request.
    assert [(c["table"], c.get("filters")) for c in calls(client, "select")] == [
        ("projects", {"includeArchived": False})
    ]
    assert {c["run_id"] for c in client.tool_calls} == {run_id}
    assert not any("request_id" in c for c in client.tool_calls)
    for insert in calls(client, "insert"):
        assert not {"id", "createdAt", "updatedAt"} & set(insert["data"])
    assert asked_files(batch) == ["acme.md", "bob.txt"]  # the PDF was never sent


async def metrics(batch: Batch) -> str:
    """The `/metrics` exposition now (the registry is the process's: compare before and after)."""
    response = await batch.get("/metrics")
    assert response.status_code == 200
    return response.text


async def test_a_runs_extraction_calls_are_stored_as_its_usage_and_counted(
    batch: Batch, folder: Path
) -> None:
    account, _, agent = await batch.ready(folder)
    batch.script.items["acme.md"] = {"tasks": [{"title": "Send the invoice"}]}
    before = await metrics(batch)

    run_id = await batch.run_now(account, agent["id"])
    assert (await batch.finished(account, run_id))["status"] == "success"

    rows = await usage_rows(batch, account.user_id)
    assert [row["role"] for row in rows] == ["extraction", "extraction"]  # one call per file
    assert {(row["run_id"], row["request_id"]) for row in rows} == {(run_id, None)}
    assert {row["model"] for row in rows} == {"openai/scripted"}
    assert batch.llm is not None
    assert sorted(row["prompt_tokens"] for row in rows) == sorted(batch.llm.prompt_tokens)
    assert all(row["completion_tokens"] > 0 for row in rows)
    after = await metrics(batch)
    assert sample(after, "adiuva_batch_runs_total", status="success") == 1 + sample(
        before, "adiuva_batch_runs_total", status="success"
    )
    assert sample(after, "adiuva_model_calls_total", role="extraction", outcome="ok") == 2 + sample(
        before, "adiuva_model_calls_total", role="extraction", outcome="ok"
    )
    assert sample(after, "adiuva_model_tokens_total", role="extraction", kind="prompt") == sum(
        batch.llm.prompt_tokens
    ) + sample(before, "adiuva_model_tokens_total", role="extraction", kind="prompt")
    # The schedule claimed nothing: no lateness observed for a manual run.
    lag = "adiuva_batch_scheduler_lag_seconds_count"
    assert sample(after, lag) == sample(before, lag)


async def test_a_failed_extraction_call_is_counted_not_stored_and_the_run_partial(
    batch: Batch, folder: Path
) -> None:
    account, _, agent = await batch.ready(folder)
    batch.script.items["acme.md"] = {"tasks": [{"title": "Send the invoice"}]}
    batch.script.failing.add("bob.txt")
    before = await metrics(batch)

    run_id = await batch.run_now(account, agent["id"])
    assert (await batch.finished(account, run_id))["status"] == "partial"

    rows = await usage_rows(batch, account.user_id)
    assert [(row["role"], row["run_id"]) for row in rows] == [("extraction", run_id)]
    after = await metrics(batch)
    assert sample(after, "adiuva_batch_runs_total", status="partial") == 1 + sample(
        before, "adiuva_batch_runs_total", status="partial"
    )
    assert sample(after, "adiuva_model_calls_total", role="extraction", outcome="error") >= 1 + (
        sample(before, "adiuva_model_calls_total", role="extraction", outcome="error")
    )


async def test_the_prompt_holds_the_template_the_file_today_and_the_projects(
    batch: Batch, folder: Path
) -> None:
    account = await batch.account()
    client = await batch.shared_desktop(account, folder)
    client.store.execute(action="insert", table="projects", data={"name": "Website"})
    agent = await batch.create_agent(account, folder, timezone="Pacific/Kiritimati")

    await batch.finished(account, await batch.run_now(account, agent["id"]))

    assert batch.llm is not None
    [request] = [r for r in batch.llm.requests if file_asked(r) == "acme.md"]
    today = datetime.now(UTC).astimezone(ZoneInfo("Pacific/Kiritimati"))
    assert "Find what I promised clients." in request.system_prompt
    assert f"Today is {today.date().isoformat()}" in request.system_prompt
    assert ": Website" in request.system_prompt
    assert "Send the invoice by Friday." in request.last_message.text
    assert request.body["tool_choice"] == "required"
    assert request.tool_names == ["Extraction"]
    assert set(request.tools[0].parameters["properties"]) == {
        "tasks",
        "notes",
        "milestones",
        "projects",
    }


async def test_a_second_run_extracts_only_what_changed(batch: Batch, folder: Path) -> None:
    account, client, agent = await batch.ready(folder)
    batch.script.items["acme.md"] = {"tasks": [{"title": "Send the invoice"}]}
    await batch.finished(account, await batch.run_now(account, agent["id"]))
    assert batch.llm is not None
    asked_before = len(batch.llm.requests)

    second = await batch.finished(account, await batch.run_now(account, agent["id"]))

    assert (second["status"], second["items_created"], second["items_processed"]) == (
        "success",
        0,
        2,
    )
    assert len(batch.llm.requests) == asked_before  # no model call for unchanged files
    assert [t["title"] for t in client.store.rows("tasks")] == ["Send the invoice"]
    (folder / "acme.md").write_text("# ACME\nSend the invoice by Friday.\nAnd a reminder.\n")
    third = await batch.finished(account, await batch.run_now(account, agent["id"]))
    assert third["items_created"] == 1
    assert [file_asked(r) for r in batch.llm.requests[asked_before:]] == ["acme.md"]
    digests = await batch.sql("SELECT content_digest FROM batch_processed_chunks")
    assert len(digests) == 3  # bob.txt, and both versions of acme.md


async def test_a_model_failure_on_one_file_is_an_error_entry_and_is_retried_later(
    batch: Batch, folder: Path
) -> None:
    account, client, agent = await batch.ready(folder)
    batch.script.items["acme.md"] = {"tasks": [{"title": "Send the invoice"}]}
    batch.script.items["bob.txt"] = {"tasks": [{"title": "Call Bob"}]}
    batch.script.failing.add("bob.txt")

    run = await batch.finished(account, await batch.run_now(account, agent["id"]))

    assert run["status"] == "partial"
    assert run["items_created"] == 1
    [error] = run["errors"]
    assert error.endswith("bob.txt: the model could not extract from it")
    batch.script.failing.clear()
    again = await batch.finished(account, await batch.run_now(account, agent["id"]))
    assert (again["status"], again["items_created"]) == ("success", 1)
    titles = sorted(task["title"] for task in client.store.rows("tasks"))
    assert titles == ["Call Bob", "Send the invoice"]


async def test_a_milestone_without_a_project_is_skipped_and_reported(
    batch: Batch, folder: Path
) -> None:
    account, client, agent = await batch.ready(folder, data_types=["timelines"])
    batch.script.items["acme.md"] = {
        "milestones": [{"title": "Go live", "date": "2027-02-01", "project": "Nowhere"}]
    }

    run = await batch.finished(account, await batch.run_now(account, agent["id"]))

    assert run["status"] == "partial"
    assert [e.split(": ", 1)[1] for e in run["errors"]] == [
        "milestone “Go live” skipped: its project could not be determined"
    ]
    assert client.store.rows("timelines") == []
    assert calls(client, "insert") == []


async def test_an_insert_the_desktop_refuses_is_an_error_entry(batch: Batch, folder: Path) -> None:
    account, client, agent = await batch.ready(folder)
    batch.script.items["acme.md"] = {"tasks": [{"title": "Send the invoice"}, {"title": "Ok"}]}

    async def refuse_invoices(call: Frame) -> Frame:
        if call["action"] == "insert" and call["data"].get("title") == "Send the invoice":
            return {"error": "disk full"}
        return tool_result_payload(client.store, call)

    client.on_tool_call = refuse_invoices
    run = await batch.finished(account, await batch.run_now(account, agent["id"]))

    assert (run["status"], run["items_created"]) == ("partial", 1)
    assert run["errors"][0].endswith("acme.md: a tasks item was not inserted: disk full")


# -- limits and a misbehaving desktop --------------------------------------------------


@pytest.mark.parametrize(
    "live_settings",
    [{**BATCH_DEFAULTS, "batch_max_file_bytes": 40, "batch_max_files_per_run": 2}],
)
async def test_files_over_the_limits_are_skipped_and_named(batch: Batch, folder: Path) -> None:
    (folder / "big.md").write_text("x" * 41)
    (folder / "zz.md").write_text("the third file")
    account = await batch.account()
    await batch.shared_desktop(account, folder)
    agent = await batch.create_agent(account, folder)

    run = await batch.finished(account, await batch.run_now(account, agent["id"]))

    # Walked in path order: acme.md, big.md, zz.md, then clients/bob.txt.
    assert run["status"] == "partial"
    assert run["items_processed"] == 1
    assert run["errors"] == [
        f"{folder / 'big.md'}: 41 bytes, over the limit of 40 bytes per file; skipped",
        f"{folder / 'zz.md'}: over the limit of 2 files per run; skipped",
        f"{folder / 'clients' / 'bob.txt'}: over the limit of 2 files per run; skipped",
    ]
    assert asked_files(batch) == ["acme.md"]


@pytest.mark.parametrize("live_settings", [{**BATCH_DEFAULTS, "batch_max_run_bytes": 50}])
async def test_files_past_the_total_byte_limit_are_skipped(batch: Batch, folder: Path) -> None:
    account = await batch.account()
    await batch.shared_desktop(account, folder)
    agent = await batch.create_agent(account, folder)

    run = await batch.finished(account, await batch.run_now(account, agent["id"]))

    # acme.md (35 bytes) fits; bob.txt (27 more) would make 62.
    assert run["errors"] == [
        f"{folder / 'clients' / 'bob.txt'}: over the limit of 50 bytes per run; skipped"
    ]
    assert asked_files(batch) == ["acme.md"]


@pytest.mark.parametrize("live_settings", [{**BATCH_DEFAULTS, "batch_idle_timeout_s": 0.5}])
async def test_a_silent_desktop_ends_the_run_with_an_error(batch: Batch, folder: Path) -> None:
    account, client, agent = await batch.ready(folder)

    client.on_agent_run = stay_silent
    run = await batch.finished(account, await batch.run_now(account, agent["id"]))

    assert run["status"] == "error"
    assert run["errors"] == ["the desktop sent no agent_data or agent_complete for 0.5 seconds"]
    assert batch.link(account, "desk").protocol.runs == set()


async def test_a_desktop_disconnecting_mid_run_ends_it_at_once(batch: Batch, folder: Path) -> None:
    account, client, agent = await batch.ready(folder)
    batch.script.items["acme.md"] = {"tasks": [{"title": "Send the invoice"}]}
    sent_part = asyncio.Event()

    async def leave_half_way(run: Frame) -> None:
        *data, _complete = await client.run_frames(run)
        first = data[0]
        await client.send_json({**first, "files": first["files"][:1]})
        sent_part.set()

    client.on_agent_run = leave_half_way
    run_id = await batch.run_now(account, agent["id"])
    await asyncio.wait_for(sent_part.wait(), 5)
    started = asyncio.get_running_loop().time()
    await client.close()
    run = await batch.finished(account, run_id)

    assert asyncio.get_running_loop().time() - started < 5  # the idle time-out is 10 s
    assert run["status"] == "error"
    assert run["errors"][-1] == "device disconnected"
    assert batch.scheduler.running == []


async def test_a_desktop_leaving_while_an_insert_is_pending_ends_the_run_at_once(
    batch: Batch, folder: Path
) -> None:
    account, client, agent = await batch.ready(folder)
    batch.script.items["acme.md"] = {"tasks": [{"title": "First"}, {"title": "Second"}]}
    insert_arrived = asyncio.Event()

    async def never_answer_inserts(call: Frame) -> Frame:
        if call["action"] == "insert":
            insert_arrived.set()
            await asyncio.Event().wait()
        return tool_result_payload(client.store, call)

    client.on_tool_call = never_answer_inserts
    run_id = await batch.run_now(account, agent["id"])
    await asyncio.wait_for(insert_arrived.wait(), 5)
    await client.close()
    run = await batch.finished(account, run_id)

    assert (run["status"], run["items_created"]) == ("error", 0)
    assert run["errors"] == ["device disconnected"]
    assert await batch.sql("SELECT * FROM batch_processed_chunks") == []  # tried again later


async def test_a_server_shutting_down_ends_its_runs_as_interrupted(
    batch: Batch, folder: Path
) -> None:
    account, _held, run_id = await batch.held_run(folder)

    await batch.scheduler.close()

    run = await batch.finished(account, run_id)
    assert run["status"] == "error"
    assert run["errors"] == ["interrupted: the server running it stopped before it ended"]
    assert batch.link(account, "desk").protocol.runs == set()


async def test_frames_for_unknown_finished_or_other_users_runs_are_refused(
    batch: Batch, folder: Path
) -> None:
    account, client, agent = await batch.ready(folder)
    run_id = await batch.run_now(account, agent["id"])
    before = await batch.finished(account, run_id)
    intruder = await batch.desktop(await batch.account(), "desk")
    stray = {"path": "/x.md", "name": "x.md", "content": "Pay me.", "metadata": {}}

    sent: list[tuple[DeviceClient, Frame]] = [
        (client, {"type": "agent_data", "run_id": uuid.uuid4().hex, "files": [stray]}),
        (client, {"type": "agent_data", "run_id": run_id, "files": [stray]}),
        (client, {"type": "agent_complete", "run_id": run_id, "files_read": 1}),
        (intruder, {"type": "agent_data", "run_id": run_id, "files": [stray]}),
    ]
    for sender, frame in sent:
        await sender.send_json(frame)
        error = await next_error(sender)
        assert error["code"] == "unknown_run", frame

    assert await batch.finished(account, run_id) == before
    assert len(await batch.runs(account)) == 1
    assert asked_files(batch) == ["acme.md", "bob.txt"]  # the stray file never reached the model


@pytest.mark.parametrize("live_settings", [{**BATCH_DEFAULTS, "ws_max_frame_bytes": 4096}])
async def test_an_oversized_agent_data_frame_is_refused_and_the_run_goes_on(
    batch: Batch, folder: Path
) -> None:
    account, client, agent = await batch.ready(folder)

    async def too_big_first(run: Frame) -> None:
        huge = {"path": "/huge.md", "name": "huge.md", "content": "x" * 8000, "metadata": {}}
        await client.send_json({"type": "agent_data", "run_id": run["run_id"], "files": [huge]})
        for frame in await client.run_frames(run):
            await client.send_json(frame)

    client.on_agent_run = too_big_first
    run = await batch.finished(account, await batch.run_now(account, agent["id"]))

    error = await next_error(client)
    assert error["code"] == "frame_too_large"
    assert (run["status"], run["items_processed"]) == ("success", 2)


async def test_invalid_agent_frames_get_errors_and_change_nothing(
    batch: Batch, folder: Path
) -> None:
    account, held, run_id = await batch.held_run(folder)
    client = held.client
    for raw in [
        '{"type": "agent_data", "run_id": "' + run_id + '", "files": "nope"}',
        '{"type": "agent_complete", "run_id": "' + run_id + '", "files_read": -1}',
        '{"type": "agent_data", "run_id": "' + run_id + '", "files": [{"path": 1}]',
    ]:
        await client.send_text(raw)
        error = await next_error(client)
        assert error["code"] in {"invalid_frame", "invalid_json"}, raw
    held.release.set()
    run = await batch.finished(account, run_id)

    assert (run["status"], run["items_processed"]) == ("success", 2)


# -- starting runs ---------------------------------------------------------------------------


async def test_run_now_is_refused_while_the_desktop_is_away_or_a_run_is_going(
    batch: Batch, folder: Path
) -> None:
    account = await batch.account()
    agent = await batch.create_agent(account, folder)
    path = f"/api/v1/agents/{agent['id']}/run"

    offline = await batch.http("POST", path, account.token)
    assert offline.status_code == 409
    assert "desktop is not connected" in offline.json()["detail"]

    client = await batch.shared_desktop(account, folder)
    held = client.on_agent_run = HeldRuns(client)
    answers = await asyncio.gather(*(batch.http("POST", path, account.token) for _ in range(5)))
    assert sorted(a.status_code for a in answers) == [202, 409, 409, 409, 409]
    assert {a.json()["detail"] for a in answers if a.status_code == 409} == {
        "A run of this agent is already going; wait for it to finish"
    }
    held.release.set()
    [started] = [a.json()["run_id"] for a in answers if a.status_code == 202]
    await batch.finished(account, started)
    assert len(client.agent_runs) == 1
    assert len(await batch.runs(account)) == 1


async def test_another_users_agent_is_not_found(batch: Batch, folder: Path) -> None:
    owner, other = await batch.account(), await batch.account()
    agent = await batch.create_agent(owner, folder)
    await batch.shared_desktop(other, folder)

    for method, path, body in [
        ("POST", f"/api/v1/agents/{agent['id']}/run", None),
        ("PUT", f"/api/v1/agents/local/{agent['id']}", {"enabled": False}),
        ("DELETE", f"/api/v1/agents/local/{agent['id']}", None),
        ("GET", f"/api/v1/agents/runs?agent_id={agent['id']}", None),
    ]:
        response = await batch.http(method, path, other.token, json=body)
        assert (response.status_code, response.json()) == (404, {"detail": "No such agent"})
    assert (await batch.http("GET", "/api/v1/agents/local", owner.token)).json()[0]["enabled"]


async def make_due(batch: Batch, agent_id: str, *, slots_missed: int) -> None:
    """As if the agent's slots passed while its desktop was away (5 minutes apart)."""
    await batch.sql(
        "UPDATE batch_agents SET next_run_at = :when WHERE id = :id",
        when=datetime.now(UTC) - timedelta(minutes=5 * slots_missed),
        id=uuid.UUID(agent_id),
    )


async def test_an_overdue_agent_runs_once_when_its_desktop_says_hello(
    batch: Batch, folder: Path
) -> None:
    account = await batch.account()
    agent = await batch.create_agent(account, folder, schedule_cron="*/5 * * * *")
    other = await batch.create_agent(account, folder, device_id="laptop", schedule_cron="@hourly")
    await make_due(batch, agent["id"], slots_missed=12)
    await make_due(batch, other["id"], slots_missed=1)

    client = await batch.shared_desktop(account, folder)
    await batch.until(lambda: len(client.agent_runs) == 1)
    [run] = await batch.runs(account)
    run = await batch.finished(account, run["id"])
    assert batch.scheduler.running == []
    await batch.scheduler.run_pass()

    assert (run["trigger"], run["status"], run["agent_id"]) == ("hello", "success", agent["id"])
    assert len(await batch.runs(account)) == 1  # once, not once per missed slot
    [row] = await batch.sql(
        "SELECT next_run_at, last_run_at FROM batch_agents WHERE id = :id",
        id=uuid.UUID(agent["id"]),
    )
    assert row.next_run_at > datetime.now(UTC)
    assert row.last_run_at is not None
    # The laptop's agent waits for the laptop.
    assert len(await batch.runs(account, other["id"])) == 0


async def test_overdue_agents_of_one_desktop_run_one_at_a_time(batch: Batch, folder: Path) -> None:
    account = await batch.account()
    # Three enabled agents: more than the free plan's two.
    await batch.sql("UPDATE users SET tier = 'pro' WHERE id = :id", id=account.user_id)
    agents = [await batch.create_agent(account, folder, name=f"Agent {n}") for n in range(3)]
    for agent in agents:
        await make_due(batch, agent["id"], slots_missed=1)
    open_runs: list[str] = []
    most_at_once = 0

    async def answer_slowly(run: Frame) -> None:
        nonlocal most_at_once
        open_runs.append(run["run_id"])
        most_at_once = max(most_at_once, len(open_runs))
        await asyncio.sleep(0.2)
        open_runs.remove(run["run_id"])
        for frame in await client.run_frames(run):
            await client.send_json(frame)

    client = await batch.shared_desktop(account, folder, on_agent_run=answer_slowly)
    await batch.until(lambda: len(client.agent_runs) == 3, timeout_s=RUN_TIMEOUT_S)
    for run in await batch.runs(account):
        assert (await batch.finished(account, run["id"]))["status"] == "success"

    assert most_at_once == 1


async def test_the_scheduler_claims_a_due_slot_once(batch: Batch, folder: Path) -> None:
    # Passes only: a late catch-up from the desktop's hello may not take the slot first.
    batch.app.state.hello_handler = None
    account, client, agent = await batch.ready(folder, schedule_cron="*/5 * * * *")
    await make_due(batch, agent["id"], slots_missed=3)

    passes = await asyncio.gather(*(batch.scheduler.run_pass() for _ in range(4)))

    assert sorted(len(claimed) for claimed in passes) == [0, 0, 0, 1]
    [run] = await batch.runs(account)
    assert (await batch.finished(account, run["id"]))["trigger"] == "schedule"
    assert len(client.agent_runs) == 1


async def test_the_scheduler_pass_observes_how_late_it_claimed_a_slot(
    batch: Batch, folder: Path
) -> None:
    batch.app.state.hello_handler = None  # the pass claims the slot, not a catch-up
    account, _, agent = await batch.ready(folder, schedule_cron="*/5 * * * *")
    await make_due(batch, agent["id"], slots_missed=3)  # due 15 minutes ago
    before = await metrics(batch)

    [claimed] = await batch.scheduler.run_pass()
    await batch.finished(account, str(claimed.run_id))

    after = await metrics(batch)
    lag = "adiuva_batch_scheduler_lag_seconds"
    assert sample(after, f"{lag}_count") == sample(before, f"{lag}_count") + 1
    late_by = sample(after, f"{lag}_sum") - sample(before, f"{lag}_sum")
    assert 15 * 60 <= late_by < 16 * 60
    assert sample(after, f"{lag}_bucket", le="900.0") == sample(before, f"{lag}_bucket", le="900.0")
    assert sample(after, "adiuva_batch_runs_total", status="success") == 1 + sample(
        before, "adiuva_batch_runs_total", status="success"
    )


async def test_a_run_left_running_by_a_crashed_instance_is_recovered(
    batch: Batch, folder: Path
) -> None:
    account = await batch.account()
    agent = await batch.create_agent(account, folder)
    crashed = uuid.uuid4()
    long_ago = datetime.now(UTC) - timedelta(hours=3)
    await batch.sql(
        "INSERT INTO batch_runs (id, agent_id, user_id, trigger, status, items_processed,"
        " items_created, started_at, touched_at)"
        " VALUES (:id, :agent, :user, 'schedule', 'running', 0, 0, :at, :at)",
        id=crashed,
        agent=uuid.UUID(agent["id"]),
        user=account.user_id,
        at=long_ago,
    )
    await batch.shared_desktop(account, folder)
    blocked = await batch.http("POST", f"/api/v1/agents/{agent['id']}/run", account.token)
    assert blocked.status_code == 409

    before = await metrics(batch)
    await batch.scheduler.run_pass()

    after = await metrics(batch)
    assert sample(after, "adiuva_batch_runs_total", status="error") == 1 + sample(
        before, "adiuva_batch_runs_total", status="error"
    )
    [recovered] = [r for r in await batch.runs(account) if r["id"] == str(crashed)]
    assert recovered["status"] == "error"
    assert recovered["errors"] == ["interrupted: the server running it stopped before it ended"]
    assert recovered["completed_at"] is not None
    run = await batch.finished(account, await batch.run_now(account, agent["id"]))
    assert run["status"] == "success"


async def test_a_live_run_waiting_its_turn_is_not_taken_for_stale(
    batch: Batch, folder: Path
) -> None:
    account, held, run_id = await batch.held_run(folder)
    await batch.sql("UPDATE batch_runs SET touched_at = now() - interval '3 hours'")

    await batch.scheduler.run_pass()  # refreshes its own runs before recovering orphans

    [(status,)] = await batch.sql("SELECT status FROM batch_runs")
    assert status == "running"
    held.release.set()
    assert (await batch.finished(account, run_id))["status"] == "success"


async def test_deleting_an_agent_stops_its_run_and_deletes_its_logs(
    batch: Batch, folder: Path
) -> None:
    account, client, agent = await batch.ready(folder)
    await batch.finished(account, await batch.run_now(account, agent["id"]))

    client.on_agent_run = stay_silent
    await batch.run_now(account, agent["id"])
    await batch.until(lambda: len(client.agent_runs) == 2)

    deleted = await batch.http("DELETE", f"/api/v1/agents/local/{agent['id']}", account.token)

    assert deleted.status_code == 204
    await batch.until(lambda: batch.scheduler.running == [])
    assert await batch.runs(account) == []
    assert await batch.sql("SELECT * FROM batch_processed_chunks") == []
    assert batch.link(account, "desk").protocol.runs == set()


# -- privacy ----------------------------------------------------------------------------------


async def test_nothing_the_user_wrote_is_readable_in_a_database_dump(
    batch: Batch, folder: Path
) -> None:
    secret_folder = folder / "Project Nightingale"
    secret_folder.mkdir()
    (secret_folder / "plan.md").write_text("Acquire Globex quietly.")
    account = await batch.account()
    await batch.shared_desktop(account, secret_folder)
    agent = await batch.create_agent(
        account,
        secret_folder,
        name="Nightingale watcher",
        prompt_template="Track the Globex takeover.",
        file_extensions=[".md", ".secretext"],
    )
    batch.script.items["plan.md"] = {
        "milestones": [{"title": "Sign", "date": "2027-01-01", "project": "Unknown"}]
    }
    run = await batch.finished(account, await batch.run_now(account, agent["id"]))
    assert "Project Nightingale" in run["errors"][0]  # readable through the API…

    dump = await dump_database(batch.app)

    for plaintext in (
        "Nightingale",
        "Globex",
        "takeover",
        ".secretext",
        "plan.md",
        "Acquire",
        "Sign",
    ):
        assert plaintext not in dump, plaintext  # …never in the database
    assert "0 9 * * 1" in dump  # the schedule is in the clear, as the scheduler needs it


async def test_run_pages_come_newest_first(batch: Batch, folder: Path) -> None:
    account = await batch.account()
    await batch.shared_desktop(account, folder)
    agent = await batch.create_agent(account, folder)
    started = [await batch.run_now(account, agent["id"]) for _ in range(1)]
    await batch.finished(account, started[0])
    for _ in range(2):
        await batch.finished(account, await batch.run_now(account, agent["id"]))
        started.append((await batch.runs(account))[0]["id"])

    first = await batch.http(
        "GET", "/api/v1/agents/runs", account.token, params={"limit": 2, "page": 1}
    )
    second = await batch.http(
        "GET", "/api/v1/agents/runs", account.token, params={"limit": 2, "page": 2}
    )

    assert first.json()["total"] == 3
    assert [r["id"] for r in first.json()["items"]] == started[::-1][:2]
    assert [r["id"] for r in second.json()["items"]] == started[::-1][2:]
    assert json.loads(second.text)["page"] == 2
