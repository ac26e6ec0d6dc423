"""Cloud agents end to end: the real server, loopback fakes of Google and Microsoft, devclient.

The provider URL settings point at `tests.batch.provider_fakes`; extraction goes
through LiteLLM to the scripted OpenAI-compatible server; the desktop is devclient.
The browser's part of OAuth is played by following the fake's redirect.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

import httpx
import pytest
from fastapi import FastAPI

from app.core.settings import Settings
from devclient.client import Frame, tool_result_payload
from tests.batch.provider_fakes import (
    PUBLIC_BASE,
    FakeMessage,
    ProviderFakes,
    consent,
    provider_settings,
)
from tests.e2e.conftest import Account, Live, running
from tests.e2e.live_server import serve
from tests.e2e.test_batch_agents import BATCH_DEFAULTS, Batch, metrics
from tests.e2e.test_observability import sample
from tests.e2e.test_usage import usage_rows
from tests.llm.extraction import ExtractionScript
from tests.llm.scripted_openai import scripted_llm
from tests.memory.test_memory_service import dump_database


@pytest.fixture
def live_settings() -> dict[str, Any]:
    return dict(BATCH_DEFAULTS)


class Cloud(Batch):
    fakes: ProviderFakes

    async def connect(self, account: Account, provider: str) -> str:
        """Authorize, follow the provider's redirect, call back: the `encrypted_token`."""
        callback = await self.consent(account, provider)
        response = await self.http("GET", callback, account.token)
        assert response.status_code == 200, response.text
        return str(response.json()["encrypted_token"])

    async def consent(self, account: Account, provider: str) -> str:
        """The callback path and query the provider redirected the browser to."""
        async with httpx.AsyncClient(base_url=self.base_url) as client:
            return await consent(client, {"Authorization": f"Bearer {account.token}"}, provider)

    async def create_cloud(
        self, account: Account, provider: str, token: str, **fields: Any
    ) -> httpx.Response:
        body = {
            "provider": provider,
            "name": "Inbox",
            "encrypted_token": token,
            "data_types": ["tasks", "notes"],
            "prompt_template": "Find what clients ask of me.",
            "schedule_cron": "0 9 * * *",
            "timezone": "UTC",
            **fields,
        }
        return await self.http("POST", "/api/v1/agents/cloud", account.token, json=body)


@pytest.fixture
async def cloud(
    assistant_settings: Callable[[str], Settings], tmp_path: Path
) -> AsyncIterator[Cloud]:
    server = Cloud(base_url="", app=FastAPI(), tmp_path=tmp_path)
    server.script = ExtractionScript()
    server.fakes = ProviderFakes()
    async with scripted_llm(server.script) as llm:
        settings = assistant_settings(llm.api_base)
        async with serve(server.fakes.build(), settings) as fake_base:
            server.fakes.base_url = fake_base
            settings = settings.model_copy(update=provider_settings(fake_base))
            server.llm = llm
            async with running(settings, server):
                yield server


def _recent(minutes: int) -> datetime:
    return datetime.now(UTC) - timedelta(minutes=minutes)


def _mail(n: int, subject: str, text: str = "", html: str | None = None) -> FakeMessage:
    return FakeMessage(f"m{n}", subject, "client@acme.test", _recent(60 - n), text, html)


def _days_ago(days: int) -> datetime:
    return datetime.now(UTC) - timedelta(days=days)


def _subjects_read(cloud: Cloud) -> list[str]:
    """The subjects the model was asked about, in order."""
    assert cloud.llm is not None
    found = []
    for request in cloud.llm.requests:
        text = request.last_message.text
        if "Subject: " in text:
            found.append(text.split("Subject: ", 1)[1].split("\n", 1)[0])
    return found


# -- the whole flow, per provider -------------------------------------------------------------


async def test_gmail_offline_run_is_delivered_once_after_hello_and_never_twice(
    cloud: Cloud,
) -> None:
    account = await cloud.account()
    cloud.fakes.gmail = [
        _mail(1, "Invoice", "Please send the invoice by Friday."),
        _mail(2, "Launch", html="<p>Book the <b>launch</b> venue</p><script>x()</script>"),
        _mail(3, "Hello", "Just saying hi."),
    ]
    cloud.script.items["Invoice"] = {"tasks": [{"title": "Send the invoice"}]}
    cloud.script.items["Launch"] = {
        "tasks": [{"title": "Book the venue"}],
        "notes": [{"title": "Launch", "content": "At the harbour."}],
    }
    token = await cloud.connect(account, "gmail")
    created = await cloud.create_cloud(account, "gmail", token, filter_config={"labels": ["INBOX"]})
    assert created.status_code == 201, created.text
    agent = created.json()
    assert agent["filter_config"]["labels"] == ["INBOX"]

    run = await cloud.finished(account, await cloud.run_now(account, agent["id"]))  # offline

    assert (run["status"], run["items_processed"], run["items_created"]) == ("success", 3, 3)
    assert run["items_waiting"] == 3
    # Pagination: three messages, two per page; the HTML body reduced to text.
    assert sum("pageToken=2" in url for url in cloud.fakes.requests) == 1
    assert cloud.llm is not None
    [launch] = [r for r in cloud.llm.requests if "Subject: Launch" in r.last_message.text]
    assert "Book the launch venue" in launch.last_message.text
    assert "x()" not in launch.last_message.text
    assert "From: client@acme.test" in launch.last_message.text

    client = await cloud.desktop(account)
    await cloud.until(lambda: len(client.store.rows("tasks")) == 2, timeout_s=10)
    await cloud.until(lambda: len(client.store.rows("notes")) == 1, timeout_s=10)
    inserts = [c for c in client.tool_calls if c["action"] == "insert"]
    assert [c["data"]["title"] for c in inserts] == ["Send the invoice", "Book the venue", "Launch"]
    assert {c["run_id"] for c in inserts} == {run["id"]}
    for row in [*client.store.rows("tasks"), *client.store.rows("notes")]:
        assert (row["isAiSuggested"], row["isApproved"]) == (1, 0)

    # A second run reads the same messages again (within its window): none is extracted twice.
    extractions = len(cloud.llm.requests)
    second = await cloud.finished(account, await cloud.run_now(account, agent["id"]))
    assert (second["status"], second["items_processed"], second["items_waiting"]) == (
        "success",
        0,
        0,
    )
    assert len(cloud.llm.requests) == extractions
    assert len(client.store.rows("tasks")) == 2

    dump = await dump_database(cloud.app)
    for secret in [*cloud.fakes.access_tokens, *cloud.fakes.refresh_tokens]:
        assert secret not in dump
    for text in ["Find what clients ask of me.", "Send the invoice", "INBOX", "harbour"]:
        assert text not in dump


async def test_outlook_refreshes_on_401_and_backs_off_on_429(cloud: Cloud) -> None:
    account = await cloud.account()
    cloud.fakes.outlook = [_mail(n, f"Mail {n}", f"Body {n}") for n in range(1, 6)]
    token = await cloud.connect(account, "outlook")
    agent = (await cloud.create_cloud(account, "outlook", token)).json()
    cloud.fakes.expire_tokens()
    cloud.fakes.throttle = 1

    run = await cloud.finished(account, await cloud.run_now(account, agent["id"]))

    assert (run["status"], run["items_processed"]) == ("success", 5)
    assert cloud.fakes.refreshes == 1
    # 429 once, then 401 with the old token, then three pages with the new one.
    assert len(cloud.fakes.requests) == 5
    assert sum("skiptoken" in url for url in cloud.fakes.requests) == 2
    assert len(set(cloud.fakes.api_tokens[-3:])) == 1


async def test_a_run_that_stays_throttled_ends_in_error_without_looping(cloud: Cloud) -> None:
    account = await cloud.account()
    token = await cloud.connect(account, "outlook")
    agent = (await cloud.create_cloud(account, "outlook", token)).json()
    cloud.fakes.throttle = 100

    run = await cloud.finished(account, await cloud.run_now(account, agent["id"]))

    assert run["status"] == "error"
    assert run["errors"] == ["the provider answered 429 4 times; try later"]
    assert cloud.fakes.throttle == 96


async def test_teams_chats_are_read_and_the_desktop_online_gets_them_at_once(
    cloud: Cloud,
) -> None:
    account = await cloud.account()
    client = await cloud.desktop(account)
    cloud.fakes.teams = {"chat-1": [FakeMessage("t1", "", "Ann", _recent(5), "Review the deck")]}
    cloud.script.items["Teams message in chat-1"] = {"tasks": [{"title": "Review the deck"}]}
    token = await cloud.connect(account, "teams")
    agent = (await cloud.create_cloud(account, "teams", token)).json()

    run = await cloud.finished(account, await cloud.run_now(account, agent["id"]))

    assert (run["status"], run["items_created"], run["items_waiting"]) == ("success", 1, 0)
    assert [row["title"] for row in client.store.rows("tasks")] == ["Review the deck"]


# -- OAuth refusals ----------------------------------------------------------------------------


async def test_a_state_is_single_use_and_bound_to_the_user_and_its_provider(cloud: Cloud) -> None:
    alice, bob = await cloud.account(), await cloud.account()
    callback = await cloud.consent(alice, "gmail")
    first = await cloud.http("GET", callback, alice.token)
    assert first.status_code == 200
    again = await cloud.http("GET", callback, alice.token)
    assert again.status_code == 400
    assert "already used" in again.json()["detail"]
    # The reference only works for the user whose state it was.
    token = first.json()["encrypted_token"]
    stolen = await cloud.create_cloud(bob, "gmail", token)
    assert stolen.status_code == 400
    assert "encrypted_token" in stolen.json()["detail"]
    other = await cloud.create_cloud(alice, "outlook", token)
    assert other.status_code == 400
    refreshed = await cloud.http(
        "POST", "/api/v1/oauth/gmail/refresh", bob.token, json={"encrypted_token": token}
    )
    assert refreshed.status_code == 400
    assert await cloud.sql("SELECT count(*) FROM oauth_connections") == [(1,)]


async def test_an_expired_state_and_a_denied_consent_store_nothing(cloud: Cloud) -> None:
    account = await cloud.account()
    callback = await cloud.consent(account, "gmail")
    await cloud.sql("UPDATE oauth_states SET expires_at = now() - interval '1 second'")
    expired = await cloud.http("GET", callback, account.token)
    assert expired.status_code == 400
    assert "expired" in expired.json()["detail"]

    cloud.fakes.deny_consent = True
    denied = await cloud.http("GET", await cloud.consent(account, "gmail"), account.token)
    assert denied.status_code == 400
    assert denied.json()["detail"] == "Access to Gmail was not granted"
    assert await cloud.sql("SELECT count(*) FROM oauth_connections") == [(0,)]
    unknown = await cloud.get(f"/api/v1/oauth/gmail/callback?code=x&state={uuid.uuid4()}")
    assert unknown.status_code == 400


async def test_the_authorization_url_asks_for_the_scopes_with_pkce(cloud: Cloud) -> None:
    account = await cloud.account()
    response = await cloud.http("GET", "/api/v1/oauth/outlook/authorize", account.token)
    query = parse_qs(urlparse(response.json()["authorization_url"]).query)
    assert query["scope"] == ["offline_access Mail.Read Chat.Read ChannelMessage.Read.All"]
    assert query["code_challenge_method"] == ["S256"]
    assert query["redirect_uri"] == [f"{PUBLIC_BASE}/api/v1/oauth/outlook/callback"]
    assert len(query["state"][0]) >= 32


async def test_refresh_route_uses_the_refresh_grant(cloud: Cloud) -> None:
    account = await cloud.account()
    token = await cloud.connect(account, "gmail")
    response = await cloud.http(
        "POST", "/api/v1/oauth/gmail/refresh", account.token, json={"encrypted_token": token}
    )
    assert response.status_code == 200
    assert response.json() == {"encrypted_token": token}
    assert cloud.fakes.refreshes == 1


async def test_a_provider_outage_is_a_502_not_a_refusal(cloud: Cloud) -> None:
    """The token endpoint down: refresh and callback answer the declared 502, store nothing."""
    account = await cloud.account()
    token = await cloud.connect(account, "gmail")
    callback = await cloud.consent(account, "gmail")
    cloud.fakes.token_outage = True
    refreshed = await cloud.http(
        "POST", "/api/v1/oauth/gmail/refresh", account.token, json={"encrypted_token": token}
    )
    assert refreshed.status_code == 502
    assert refreshed.json() == {"detail": "Gmail could not be reached; please try again later"}
    called_back = await cloud.http("GET", callback, account.token)
    assert called_back.status_code == 502
    assert await cloud.sql("SELECT count(*) FROM oauth_connections") == [(1,)]


async def test_an_encrypted_token_not_ours_is_a_declared_400_or_422(cloud: Cloud) -> None:
    """What Schemathesis sent: a token that is no Fernet token at all is refused by the
    schema (422); a well-formed one that is not this server's is the declared 400."""
    account = await cloud.account()
    garbage = await cloud.create_cloud(account, "teams", "0")
    assert garbage.status_code == 422
    assert garbage.json()["detail"][0]["loc"][-1] == "encrypted_token"
    foreign = "gAAAAA" + "A" * 134
    response = await cloud.create_cloud(account, "teams", foreign)
    assert response.status_code == 400
    assert "encrypted_token" in response.json()["detail"]
    refreshed = await cloud.http(
        "POST", "/api/v1/oauth/teams/refresh", account.token, json={"encrypted_token": foreign}
    )
    assert refreshed.status_code == 400
    token = await cloud.connect(account, "gmail")
    agent = (await cloud.create_cloud(account, "gmail", token)).json()
    update = await cloud.http(
        "PUT",
        f"/api/v1/agents/cloud/{agent['id']}",
        account.token,
        json={"encrypted_token": foreign},
    )
    assert update.status_code == 400


async def test_filter_config_is_checked_against_the_provider(cloud: Cloud) -> None:
    account = await cloud.account()
    token = await cloud.connect(account, "gmail")
    wrong = await cloud.create_cloud(account, "gmail", token, filter_config={"chats": ["x"]})
    assert wrong.status_code == 422
    agent = (await cloud.create_cloud(account, "gmail", token)).json()
    update = await cloud.http(
        "PUT",
        f"/api/v1/agents/cloud/{agent['id']}",
        account.token,
        json={"filter_config": {"folders": ["Inbox"]}},
    )
    # The same 422 shape as any invalid body, as the route declares (a string detail did not
    # fit the declared HTTPValidationError).
    assert update.status_code == 422
    assert update.json()["detail"][0]["loc"] == ["body", "filter_config", "folders"]
    # A shape no provider has is refused by the request schema itself.
    mixed = await cloud.http(
        "PUT",
        f"/api/v1/agents/cloud/{agent['id']}",
        account.token,
        json={"filter_config": {"labels": ["INBOX"], "chats": ["x"]}},
    )
    assert mixed.status_code == 422
    fitting = await cloud.http(
        "PUT",
        f"/api/v1/agents/cloud/{agent['id']}",
        account.token,
        json={"filter_config": {"senders": ["boss@acme.test"]}},
    )
    assert fitting.status_code == 200, fitting.text
    assert fitting.json()["filter_config"]["senders"] == ["boss@acme.test"]
    assert fitting.json()["filter_config"]["labels"] == []
    other = await cloud.account()
    assert (
        await cloud.http("DELETE", f"/api/v1/agents/cloud/{agent['id']}", other.token)
    ).status_code == 404
    listed = await cloud.http("GET", "/api/v1/agents/cloud", account.token)
    assert [a["id"] for a in listed.json()] == [agent["id"]]


async def test_a_desktop_dropping_mid_delivery_keeps_the_rest_for_the_next_hello(
    cloud: Cloud,
) -> None:
    account = await cloud.account()
    cloud.fakes.gmail = [_mail(n, f"Mail {n}", f"Body {n}") for n in range(1, 4)]
    for n in range(1, 4):
        cloud.script.items[f"Mail {n}"] = {"tasks": [{"title": f"Task {n}"}]}
    token = await cloud.connect(account, "gmail")
    agent = (await cloud.create_cloud(account, "gmail", token)).json()
    run = await cloud.finished(account, await cloud.run_now(account, agent["id"]))
    assert run["items_waiting"] == 3

    dropped = asyncio.Event()

    async def answer_once_then_drop(call: Frame) -> Frame | None:
        if call["data"]["title"] == "Task 1":
            return tool_result_payload(first.store, call)
        dropped.set()  # the second item is never answered: the desktop goes away
        return None

    first = await cloud.desktop(account, on_tool_call=answer_once_then_drop)
    await asyncio.wait_for(dropped.wait(), 10)
    await first.close()
    await cloud.until(lambda: not cloud.registry.is_online(account.user_id))
    assert [row["title"] for row in first.store.rows("tasks")] == ["Task 1"]
    assert await cloud.sql("SELECT count(*) FROM batch_queued_suggestions") == [(2,)]

    second = await cloud.desktop(account, "laptop")
    await cloud.until(lambda: len(second.store.rows("tasks")) == 2, timeout_s=10)
    assert [row["title"] for row in second.store.rows("tasks")] == ["Task 2", "Task 3"]
    async with asyncio.timeout(5):  # the last row goes once its answer has been handled
        while await cloud.sql("SELECT count(*) FROM batch_queued_suggestions") != [(0,)]:  # noqa: ASYNC110 - polling the database
            await asyncio.sleep(0.05)
    assert len(second.store.rows("tasks")) == 2


async def test_queued_items_expire(cloud: Cloud) -> None:
    account = await cloud.account()
    cloud.fakes.gmail = [_mail(1, "Mail 1", "Body")]
    cloud.script.items["Mail 1"] = {"tasks": [{"title": "Task 1"}]}
    token = await cloud.connect(account, "gmail")
    agent = (await cloud.create_cloud(account, "gmail", token)).json()
    await cloud.finished(account, await cloud.run_now(account, agent["id"]))
    [(expires_at,)] = await cloud.sql("SELECT expires_at FROM batch_queued_suggestions")
    assert timedelta(days=13, hours=23) < expires_at - datetime.now(UTC) <= timedelta(days=14)

    await cloud.sql("UPDATE batch_queued_suggestions SET expires_at = now()")
    await cloud.scheduler.run_pass()
    client = await cloud.desktop(account)
    await asyncio.sleep(0.5)
    assert client.store.rows("tasks") == []
    assert await cloud.sql("SELECT count(*) FROM batch_queued_suggestions") == [(0,)]


async def test_an_unconfigured_provider_answers_503_naming_the_variables(
    live: Live,
) -> None:
    account = await live.account()
    response = await live.get("/api/v1/oauth/teams/authorize", account.token)
    assert response.status_code == 503
    assert response.json()["detail"] == (
        "Microsoft Teams is not configured on this server; the operator must set"
        " OAUTH_REDIRECT_BASE, MICROSOFT_CLIENT_ID, MICROSOFT_CLIENT_SECRET"
    )


# -- usage accounting and metrics ------------------------------------------------------------


async def test_a_cloud_runs_extraction_calls_are_its_usage_and_the_run_is_counted(
    cloud: Cloud,
) -> None:
    account = await cloud.account()
    cloud.fakes.gmail = [_mail(1, "Invoice", "Send it."), _mail(2, "Launch", "Book it.")]
    cloud.script.items["Invoice"] = {"tasks": [{"title": "Send the invoice"}]}
    token = await cloud.connect(account, "gmail")
    agent = (await cloud.create_cloud(account, "gmail", token)).json()
    before = await metrics(cloud)

    run_id = await cloud.run_now(account, agent["id"])
    assert (await cloud.finished(account, run_id))["status"] == "success"

    rows = await usage_rows(cloud, account.user_id)
    assert [row["role"] for row in rows] == ["extraction", "extraction"]  # one per message
    assert {(row["run_id"], row["request_id"]) for row in rows} == {(run_id, None)}
    assert cloud.llm is not None
    assert sorted(row["prompt_tokens"] for row in rows) == sorted(cloud.llm.prompt_tokens)
    after = await metrics(cloud)
    assert sample(after, "adiuva_batch_runs_total", status="success") == 1 + sample(
        before, "adiuva_batch_runs_total", status="success"
    )
    assert sample(after, "adiuva_model_calls_total", role="extraction", outcome="ok") == 2 + sample(
        before, "adiuva_model_calls_total", role="extraction", outcome="ok"
    )


async def test_a_due_cloud_agent_runs_from_the_scheduler_pass_with_no_desktop_and_is_counted(
    cloud: Cloud,
) -> None:
    account = await cloud.account()
    cloud.fakes.gmail = [_mail(1, "Invoice", "Send it.")]
    cloud.script.items["Invoice"] = {"tasks": [{"title": "Send the invoice"}]}
    token = await cloud.connect(account, "gmail")
    agent = (await cloud.create_cloud(account, "gmail", token)).json()
    await cloud.sql("UPDATE batch_agents SET next_run_at = now() - interval '1 minute'")
    before = await metrics(cloud)

    [claimed] = await cloud.scheduler.run_pass()

    run = await cloud.finished(account, str(claimed.run_id))
    assert (run["agent_id"], run["trigger"], run["status"]) == (agent["id"], "schedule", "success")
    assert run["items_waiting"] == 1
    rows = await usage_rows(cloud, account.user_id)
    assert [(row["role"], row["run_id"]) for row in rows] == [("extraction", run["id"])]
    after = await metrics(cloud)
    lag = "adiuva_batch_scheduler_lag_seconds_count"
    assert sample(after, lag) == 1 + sample(before, lag)
    assert sample(after, "adiuva_batch_runs_total", status="success") == 1 + sample(
        before, "adiuva_batch_runs_total", status="success"
    )


# -- what each provider's filter reads ----------------------------------------------------------


async def test_teams_channel_messages_are_read_page_by_page_and_chats_left_alone(
    cloud: Cloud,
) -> None:
    account = await cloud.account()
    cloud.fakes.channels = {
        "team-1/19:general@thread.tacv2": [
            FakeMessage(f"c{n}", f"Sprint {n}", "Ann", _recent(10 - n), f"Ship part {n}")
            for n in range(1, 4)
        ]
    }
    cloud.fakes.teams = {"chat-1": [FakeMessage("t1", "", "Bob", _recent(5), "Not wanted")]}
    for n in range(1, 4):
        cloud.script.items[f"Sprint {n}"] = {"tasks": [{"title": f"Ship part {n}"}]}
    token = await cloud.connect(account, "teams")
    created = await cloud.create_cloud(
        account, "teams", token, filter_config={"channels": ["team-1/19:general@thread.tacv2"]}
    )
    assert created.status_code == 201, created.text

    run = await cloud.finished(account, await cloud.run_now(account, created.json()["id"]))

    assert (run["status"], run["items_processed"], run["items_created"]) == ("success", 3, 3)
    assert _subjects_read(cloud) == ["Sprint 1", "Sprint 2", "Sprint 3"]
    paths = [unquote(urlparse(url).path) for url in cloud.fakes.requests]
    # Three messages, two to a page: two requests, both to the channel; no chat was listed.
    assert paths == ["/v1.0/teams/team-1/channels/19:general@thread.tacv2/messages"] * 2
    client = await cloud.desktop(account)
    await cloud.until(lambda: len(client.store.rows("tasks")) == 3, timeout_s=10)


async def test_outlook_reads_only_the_folders_and_senders_asked_for(cloud: Cloud) -> None:
    account = await cloud.account()
    boss, other = "Boss@Acme.test", "newsletter@shop.test"
    cloud.fakes.outlook_folders = {
        "inbox": [
            FakeMessage("o1", "Budget", boss, _recent(30), "Approve the budget"),
            FakeMessage("o2", "Sale", other, _recent(20), "Buy now"),
        ],
        "clients": [FakeMessage("o3", "Contract", boss, _recent(10), "Sign the contract")],
        "archive": [FakeMessage("o4", "Old", boss, _recent(5), "Not this folder")],
    }
    cloud.fakes.outlook = [FakeMessage("o5", "Elsewhere", boss, _recent(5), "Not a folder")]
    token = await cloud.connect(account, "outlook")
    created = await cloud.create_cloud(
        account,
        "outlook",
        token,
        filter_config={"folders": ["inbox", "clients"], "senders": ["boss@acme.test"]},
    )
    assert created.status_code == 201, created.text

    run = await cloud.finished(account, await cloud.run_now(account, created.json()["id"]))

    assert (run["status"], run["items_processed"]) == ("success", 2)
    assert _subjects_read(cloud) == ["Budget", "Contract"]
    assert {urlparse(url).path for url in cloud.fakes.requests} == {
        "/v1.0/me/mailFolders/inbox/messages",
        "/v1.0/me/mailFolders/clients/messages",
    }


async def test_an_unknown_outlook_folder_ends_the_run_in_error_naming_the_answer(
    cloud: Cloud,
) -> None:
    account = await cloud.account()
    token = await cloud.connect(account, "outlook")
    agent = (
        await cloud.create_cloud(account, "outlook", token, filter_config={"folders": ["gone"]})
    ).json()

    run = await cloud.finished(account, await cloud.run_now(account, agent["id"]))

    assert (run["status"], run["errors"]) == ("error", ["the provider answered 404"])


@pytest.mark.parametrize("provider", ["gmail", "outlook", "teams"])
async def test_a_first_run_reads_the_date_range_then_only_what_is_new(
    cloud: Cloud, provider: str
) -> None:
    """Start 20 days ago, end 3 days ago: older than the default week, not the newest."""
    account = await cloud.account()
    messages = [
        FakeMessage(f"d{days}", f"{days} days ago", "client@acme.test", _days_ago(days), "Text")
        for days in (30, 15, 1)
    ]
    if provider == "gmail":
        cloud.fakes.gmail = messages
    elif provider == "outlook":
        cloud.fakes.outlook = messages
    else:
        cloud.fakes.teams = {"chat-1": messages}
    date_range = {
        "start": _days_ago(20).date().isoformat(),
        "end": _days_ago(3).date().isoformat(),
    }
    token = await cloud.connect(account, provider)
    created = await cloud.create_cloud(
        account, provider, token, filter_config={"date_range": date_range}
    )
    assert created.status_code == 201, created.text

    first = await cloud.finished(account, await cloud.run_now(account, created.json()["id"]))

    assert (first["status"], first["items_processed"]) == ("success", 1)
    expected = "15 days ago" if provider != "teams" else "Teams message in chat-1"
    assert _subjects_read(cloud) == [expected]
    if provider == "gmail":
        [listed] = [url for url in cloud.fakes.requests if url.split("?")[0].endswith("messages")]
        query = parse_qs(urlparse(listed).query)["q"][0]
        start = datetime.fromisoformat(f"{date_range['start']}T00:00:00+00:00")
        assert f"after:{int(start.timestamp())}" in query
        assert f"before:{date_range['end'].replace('-', '/')}" in query


async def test_gmail_labels_and_senders_narrow_the_search(cloud: Cloud) -> None:
    account = await cloud.account()
    cloud.fakes.gmail = [
        FakeMessage("g1", "Wanted", "boss@acme.test", _recent(30), "Yes", labels=("INBOX", "Work")),
        FakeMessage("g2", "Other sender", "shop@x.test", _recent(20), "No", labels=("Work",)),
        FakeMessage("g3", "Other label", "boss@acme.test", _recent(10), "No"),
    ]
    token = await cloud.connect(account, "gmail")
    created = await cloud.create_cloud(
        account,
        "gmail",
        token,
        filter_config={"labels": ["Work"], "senders": ["boss@acme.test"]},
    )
    assert created.status_code == 201, created.text

    run = await cloud.finished(account, await cloud.run_now(account, created.json()["id"]))

    assert (run["status"], run["items_processed"]) == ("success", 1)
    assert _subjects_read(cloud) == ["Wanted"]


# -- tokens ------------------------------------------------------------------------------------


async def test_a_token_already_expired_is_refreshed_before_the_provider_is_called(
    cloud: Cloud,
) -> None:
    account = await cloud.account()
    cloud.fakes.gmail = [_mail(1, "Invoice", "Send it.")]
    cloud.fakes.expires_in = 1  # past its expires_at by the time the run starts
    token = await cloud.connect(account, "gmail")
    cloud.fakes.expires_in = 3600
    agent = (await cloud.create_cloud(account, "gmail", token)).json()
    [first_token] = cloud.fakes.issued

    run = await cloud.finished(account, await cloud.run_now(account, agent["id"]))

    assert (run["status"], run["items_processed"]) == ("success", 1)
    assert cloud.fakes.refreshes == 1
    [_, refreshed] = cloud.fakes.issued
    # Every API request, the first included, carried the refreshed token: no 401 first.
    assert set(cloud.fakes.api_tokens) == {f"Bearer {refreshed}"}
    assert first_token != refreshed


# -- the callback handing control back to the app -----------------------------------------------

DESKTOP_REDIRECT = "adiuva://oauth-done"


@pytest.mark.parametrize(
    "live_settings", [{**BATCH_DEFAULTS, "oauth_desktop_redirect": DESKTOP_REDIRECT}]
)
async def test_with_a_desktop_redirect_the_callback_sends_the_browser_to_the_app(
    cloud: Cloud,
) -> None:
    account = await cloud.account()
    answer = await cloud.http("GET", await cloud.consent(account, "gmail"), account.token)

    assert answer.status_code == 302
    location = urlparse(answer.headers["location"])
    assert f"{location.scheme}://{location.netloc}" == DESKTOP_REDIRECT
    [token] = parse_qs(location.query)["encrypted_token"]
    # What the app receives is the reference, never the provider's token.
    assert not {token} & cloud.fakes.access_tokens
    created = await cloud.create_cloud(account, "gmail", token)
    assert created.status_code == 201, created.text

    cloud.fakes.deny_consent = True
    denied = await cloud.http("GET", await cloud.consent(account, "gmail"), account.token)
    assert denied.status_code == 302
    query = parse_qs(urlparse(denied.headers["location"]).query)
    assert query == {"error": ["Access to Gmail was not granted"]}
    reused = await cloud.http("GET", await cloud.consent(account, "gmail"), account.token)
    assert reused.status_code == 302
    assert "encrypted_token" not in parse_qs(urlparse(reused.headers["location"]).query)
    assert await cloud.sql("SELECT count(*) FROM oauth_connections") == [(1,)]


# -- attacks ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "filter_config",
    [
        {"labels": "INBOX"},
        {"labels": [1, 2]},
        {"labels": [None]},
        {"labels": [""]},
        {"labels": ["x" * 201]},
        {"labels": [f"L{n}" for n in range(21)]},
        {"labels": ["INBOX"] * 100_000},
        {"senders": {"$ne": None}},
        {"date_range": "last week"},
        {"date_range": {"start": "yesterday"}},
        {"date_range": {"start": "2026-11-10", "end": "2026-11-01"}},
        {"date_range": {"start": "2026-11-10", "until": "2026-11-01"}},
        {"folders": ["Inbox"]},
        [],
        "INBOX",
    ],
    ids=lambda value: str(value)[:40],
)
async def test_a_malformed_filter_config_is_refused_and_nothing_is_stored(
    cloud: Cloud, filter_config: Any
) -> None:
    account = await cloud.account()
    token = await cloud.connect(account, "gmail")

    created = await cloud.create_cloud(account, "gmail", token, filter_config=filter_config)

    assert created.status_code in (413, 422), created.text
    if created.status_code == 422:
        assert all(isinstance(error["loc"], list) for error in created.json()["detail"])
    assert await cloud.sql("SELECT count(*) FROM batch_agents") == [(0,)]


async def test_another_users_agent_and_token_are_not_found_and_nothing_leaks(
    cloud: Cloud,
) -> None:
    alice, bob = await cloud.account(), await cloud.account()
    token = await cloud.connect(alice, "gmail")
    agent = (
        await cloud.create_cloud(
            alice, "gmail", token, name="Alice's secret clients", filter_config={"labels": ["VIP"]}
        )
    ).json()
    path = f"/api/v1/agents/cloud/{agent['id']}"

    answers = [
        await cloud.http("PUT", path, bob.token, json={"name": "Mine"}),
        await cloud.http("PUT", path, bob.token, json={"enabled": True}),
        await cloud.http("DELETE", path, bob.token),
        await cloud.http("POST", f"/api/v1/agents/{agent['id']}/run", bob.token),
        await cloud.http("GET", f"/api/v1/agents/runs?agent_id={agent['id']}", bob.token),
        await cloud.http(
            "POST",
            "/api/v1/agents/journey/start",
            bob.token,
            json={"agent_type": "cloud", "agent_id": agent["id"]},
        ),
    ]

    assert [a.status_code for a in answers] == [404] * len(answers)
    for answer in answers:
        assert "secret" not in answer.text
        assert "VIP" not in answer.text
    assert (await cloud.http("GET", "/api/v1/agents/cloud", bob.token)).json() == []
    # Alice's reference in Bob's hands names nothing of his: refused, and nothing is stored.
    stolen = await cloud.create_cloud(bob, "gmail", token)
    assert stolen.status_code == 400
    moved = await cloud.http("PUT", path, alice.token, json={"name": "Still mine"})
    assert moved.json()["name"] == "Still mine"
    assert await cloud.sql("SELECT count(*) FROM batch_agents") == [(1,)]


@pytest.mark.parametrize("live_settings", [{**BATCH_DEFAULTS, "cloud_http_attempts": 2}])
async def test_a_provider_going_down_mid_run_ends_the_run_in_error_and_the_server_stays_up(
    cloud: Cloud,
) -> None:
    account = await cloud.account()
    cloud.fakes.gmail = [_mail(n, f"Mail {n}", f"Body {n}") for n in range(1, 4)]
    token = await cloud.connect(account, "gmail")
    agent = (await cloud.create_cloud(account, "gmail", token)).json()
    cloud.fakes.outage_after = 3  # two list pages and one message; then 503s

    run = await cloud.finished(account, await cloud.run_now(account, agent["id"]))

    assert (run["status"], run["items_processed"]) == ("error", 0)
    assert run["errors"] == ["the provider answered 503 2 times; try later"]
    assert (await cloud.get("/api/v1/health")).status_code == 200
    # Back up: the next run reads the same messages (nothing was marked read).
    cloud.fakes.outage_after = None
    again = await cloud.finished(account, await cloud.run_now(account, agent["id"]))
    assert (again["status"], again["items_processed"]) == ("success", 3)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/api/v1/agents/cloud"),
        ("PUT", f"/api/v1/agents/cloud/{uuid.uuid4()}"),
        ("POST", "/api/v1/agents/journey/start"),
        ("POST", "/api/v1/agents/journey/message"),
        ("POST", "/api/v1/oauth/gmail/refresh"),
    ],
)
async def test_an_oversize_body_is_refused_with_413(cloud: Cloud, method: str, path: str) -> None:
    account = await cloud.account()
    body = {"name": "x" * (1024 * 1024)}

    answer = await cloud.http(method, path, account.token, json=body)

    assert answer.status_code == 413
    assert answer.json()["detail"].startswith("Request body is limited to")
    assert (await cloud.get("/api/v1/health")).status_code == 200
