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
from urllib.parse import parse_qs, urlparse

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
from tests.e2e.test_batch_agents import BATCH_DEFAULTS, Batch
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
