"""The batch-agent configuration routes: CRUD, precise 422s, ownership, the catalog."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from app.batch.schemas import (
    GmailAgentCreate,
    LocalAgentCreate,
    OutlookAgentCreate,
    TeamsAgentCreate,
)
from app.memory import core
from tests.memory.test_memory_service import cipher_for

AGENTS = "/api/v1/agents/local"


async def sign_up(client: httpx.AsyncClient) -> tuple[dict[str, str], uuid.UUID]:
    tokens = (
        await client.post(
            "/api/v1/auth/register",
            json={"email": f"{uuid.uuid4().hex[:8]}@example.com", "password": "long enough pw"},
        )
    ).json()
    headers = {"Authorization": f"Bearer {tokens['access_token']}"}
    me = await client.get("/api/v1/auth/me", headers=headers)
    return headers, uuid.UUID(me.json()["id"])


def agent_body(**fields: Any) -> dict[str, Any]:
    return {
        "name": "Client folders",
        "device_id": "desk",
        "directory_paths": ["/home/ada/clients"],
        "schedule_cron": "0 9 * * 1",
        "timezone": "Europe/Berlin",
        **fields,
    }


async def test_create_list_update_delete(client: httpx.AsyncClient) -> None:
    headers, _ = await sign_up(client)

    created = await client.post(AGENTS, json=agent_body(), headers=headers)

    assert created.status_code == 201, created.text
    agent = created.json()
    assert agent | {"id": "-", "created_at": "-", "updated_at": "-", "next_run_at": "-"} == {
        "id": "-",
        "type": "local_directory",
        "name": "Client folders",
        "device_id": "desk",
        "directory_paths": ["/home/ada/clients"],
        "file_extensions": [".md", ".txt"],
        "data_types": ["tasks", "notes"],
        "prompt_template": "",
        "schedule_cron": "0 9 * * 1",
        "timezone": "Europe/Berlin",
        "enabled": True,
        "last_run_at": None,
        "next_run_at": "-",
        "created_at": "-",
        "updated_at": "-",
    }
    next_run = datetime.fromisoformat(agent["next_run_at"])
    assert next_run > datetime.now(UTC)
    assert (next_run.weekday(), next_run.astimezone(UTC).minute) == (0, 0)
    assert (await client.get(AGENTS, headers=headers)).json() == [agent]

    changed = await client.put(
        f"{AGENTS}/{agent['id']}",
        json={"name": "Renamed", "file_extensions": [".MD"], "enabled": False},
        headers=headers,
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["name"] == "Renamed"
    assert changed.json()["file_extensions"] == [".md"]
    assert changed.json()["directory_paths"] == ["/home/ada/clients"]  # not given: unchanged
    assert (changed.json()["enabled"], changed.json()["next_run_at"]) == (False, None)
    enabled = await client.put(f"{AGENTS}/{agent['id']}", json={"enabled": True}, headers=headers)
    assert enabled.json()["next_run_at"] == agent["next_run_at"]

    deleted = await client.delete(f"{AGENTS}/{agent['id']}", headers=headers)
    assert deleted.status_code == 204
    assert (await client.get(AGENTS, headers=headers)).json() == []
    again = await client.delete(f"{AGENTS}/{agent['id']}", headers=headers)
    assert again.status_code == 404


INVALID = [
    ({"schedule_cron": "every monday"}, "schedule_cron", "exactly 5 fields"),
    ({"schedule_cron": "0 25 * * *"}, "schedule_cron", "not a valid cron expression"),
    ({"schedule_cron": "*/4 * * * *"}, "schedule_cron", "fires 4 minute(s) apart"),
    ({"schedule_cron": "0,2 9 * * *"}, "schedule_cron", "fires 2 minute(s) apart"),
    ({"schedule_cron": "0 0 31 2 *"}, "schedule_cron", "never fires"),
    ({"schedule_cron": "@reboot"}, "schedule_cron", "unknown cron alias"),
    ({"schedule_cron": "0 9 * * 1" + " " * 100}, "schedule_cron", "at most 100 characters"),
    ({"timezone": "Mars/Olympus"}, "timezone", "unknown IANA time zone"),
    ({"data_types": []}, "data_types", "at least 1 item"),
    ({"data_types": ["tasks", "emails"]}, "data_types.1", "'tasks', 'notes', 'timelines'"),
    ({"timezone": "localtime"}, "timezone", "unknown IANA time zone"),
    ({"enabled": 0}, "enabled", "valid boolean"),
    ({"schedule_cron": ""}, "schedule_cron", "at least 1 character"),
    ({"file_extensions": ["md"]}, "file_extensions.0", "should match pattern"),
    ({"file_extensions": [".a/b"]}, "file_extensions.0", "should match pattern"),
    ({"directory_paths": []}, "directory_paths", "at least 1 item"),
    ({"directory_paths": ["x" * 1025]}, "directory_paths.0", "at most 1024 characters"),
    ({"directory_paths": [f"/p{n}" for n in range(21)]}, "directory_paths", "at most 20 items"),
    ({"name": "  "}, "name", "at least 1 character"),
    ({"name": "n" * 101}, "name", "at most 100 characters"),
    ({"prompt_template": "p" * 4001}, "prompt_template", "at most 4000 characters"),
    ({"device_id": ""}, "device_id", "at least 1 character"),
    ({"owner": "someone else"}, "owner", "Extra inputs are not permitted"),
]


@pytest.mark.parametrize(("change", "where", "message"), INVALID)
async def test_an_invalid_agent_is_refused_with_a_precise_422(
    client: httpx.AsyncClient, change: dict[str, Any], where: str, message: str
) -> None:
    headers, _ = await sign_up(client)

    response = await client.post(AGENTS, json=agent_body(**change), headers=headers)

    assert response.status_code == 422
    [error] = response.json()["detail"]
    assert ".".join(map(str, error["loc"])) == f"body.{where}"
    assert message in error["msg"]
    assert (await client.get(AGENTS, headers=headers)).json() == []


async def test_repeated_paths_types_and_extensions_count_once(client: httpx.AsyncClient) -> None:
    headers, _ = await sign_up(client)

    response = await client.post(
        AGENTS,
        json=agent_body(
            directory_paths=["/a", "/b", "/a"],
            data_types=["notes", "tasks", "notes"],
            file_extensions=[".md", ".MD", ".txt"],
        ),
        headers=headers,
    )

    agent = response.json()
    assert (agent["directory_paths"], agent["data_types"]) == (["/a", "/b"], ["notes", "tasks"])
    assert agent["file_extensions"] == [".md", ".txt"]


async def test_an_invalid_change_is_refused_and_changes_nothing(client: httpx.AsyncClient) -> None:
    headers, _ = await sign_up(client)
    agent = (await client.post(AGENTS, json=agent_body(), headers=headers)).json()

    response = await client.put(
        f"{AGENTS}/{agent['id']}", json={"schedule_cron": "* * * * *"}, headers=headers
    )

    assert response.status_code == 422
    assert "fires 1 minute(s) apart" in response.json()["detail"][0]["msg"]
    assert (await client.get(AGENTS, headers=headers)).json() == [agent]


async def test_the_time_zone_defaults_to_the_users_from_core_memory(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    headers, user_id = await sign_up(client)
    without_memory = await client.post(AGENTS, json=agent_body(timezone=None), headers=headers)
    cipher = await cipher_for(app, user_id)
    async with app.state.sessionmaker() as session:
        await core.set_core(
            session=session, cipher=cipher, user_id=user_id, key="timezone", value="Asia/Tokyo"
        )

    with_memory = await client.post(AGENTS, json=agent_body(timezone=None), headers=headers)

    assert without_memory.json()["timezone"] == "UTC"
    assert with_memory.json()["timezone"] == "Asia/Tokyo"
    # Monday 09:00 in Tokyo is Monday 00:00 UTC.
    next_run = datetime.fromisoformat(with_memory.json()["next_run_at"]).astimezone(UTC)
    assert (next_run.weekday(), next_run.hour) == (0, 0)


async def test_another_users_agents_are_not_listed_changed_or_deleted(
    client: httpx.AsyncClient,
) -> None:
    owner, _ = await sign_up(client)
    other, _ = await sign_up(client)
    agent = (await client.post(AGENTS, json=agent_body(), headers=owner)).json()
    unknown = uuid.uuid4()

    assert (await client.get(AGENTS, headers=other)).json() == []
    for agent_id in (agent["id"], str(unknown)):
        put = await client.put(f"{AGENTS}/{agent_id}", json={"name": "Mine"}, headers=other)
        delete = await client.delete(f"{AGENTS}/{agent_id}", headers=other)
        runs = await client.get("/api/v1/agents/runs", params={"agent_id": agent_id}, headers=other)
        run = await client.post(f"/api/v1/agents/{agent_id}/run", headers=other)
        for response in (put, delete, runs, run):
            assert (response.status_code, response.json()) == (404, {"detail": "No such agent"})
    assert (await client.get(AGENTS, headers=owner)).json() == [agent]


async def test_the_routes_need_a_signed_in_user(client: httpx.AsyncClient) -> None:
    for method, path in [
        ("GET", "/api/v1/agents/catalog"),
        ("GET", AGENTS),
        ("POST", AGENTS),
        ("GET", "/api/v1/agents/runs"),
        ("POST", f"/api/v1/agents/{uuid.uuid4()}/run"),
    ]:
        assert (await client.request(method, path)).status_code == 401, path


async def test_the_catalog_lists_four_types_with_their_generated_schemas(
    client: httpx.AsyncClient,
) -> None:
    headers, _ = await sign_up(client)

    catalog = (await client.get("/api/v1/agents/catalog", headers=headers)).json()

    assert [entry["type"] for entry in catalog] == ["local_directory", "gmail", "outlook", "teams"]
    assert all(entry["name"] and entry["description"] for entry in catalog)
    assert catalog[0]["config_schema"] == LocalAgentCreate.model_json_schema()
    cloud = [GmailAgentCreate, OutlookAgentCreate, TeamsAgentCreate]
    for entry, model in zip(catalog[1:], cloud, strict=True):
        assert entry["config_schema"] == model.model_json_schema()
        assert entry["config_schema"]["properties"]["provider"]["const"] == entry["type"]
    local = catalog[0]["config_schema"]
    assert set(local["required"]) == {"name", "device_id", "directory_paths", "schedule_cron"}
    assert local["properties"]["prompt_template"]["maxLength"] == 4000


async def test_runs_of_an_agent_with_none_is_an_empty_page(client: httpx.AsyncClient) -> None:
    headers, _ = await sign_up(client)
    agent = (await client.post(AGENTS, json=agent_body(), headers=headers)).json()

    page = await client.get(
        "/api/v1/agents/runs", params={"agent_id": agent["id"]}, headers=headers
    )
    too_many = await client.get("/api/v1/agents/runs", params={"limit": 101}, headers=headers)

    assert page.json() == {"items": [], "page": 1, "limit": 20, "total": 0}
    assert too_many.status_code == 422


async def test_without_a_model_a_manual_run_is_503_naming_the_setting(
    client: httpx.AsyncClient,
) -> None:
    headers, _ = await sign_up(client)
    agent = (await client.post(AGENTS, json=agent_body(), headers=headers)).json()

    response = await client.post(f"/api/v1/agents/{agent['id']}/run", headers=headers)

    assert response.status_code == 503
    assert "LLM_MODEL" in response.json()["detail"]
