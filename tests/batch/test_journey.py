"""The setup journey: questions that fit the agent, a template within 5 answers, sessions that
are the user's own, survive a restart, expire after an hour and are stored encrypted.

The model is the scripted OpenAI-compatible server, reached through the real LiteLLM path.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text

from app.core.settings import Settings
from app.main import create_app
from tests.batch.test_agents_api import agent_body, sign_up
from tests.llm.scripted_openai import (
    ErrorReply,
    ScriptedLLM,
    ScriptedPolicy,
    ScriptedToolCall,
    scripted_llm,
)
from tests.memory.test_memory_service import dump_database

pytestmark = pytest.mark.integration  # a loopback model server

START = "/api/v1/agents/journey/start"
MESSAGE = "/api/v1/agents/journey/message"


def ask(question: str) -> ScriptedToolCall:
    return ScriptedToolCall("JourneyStep", {"done": False, "message": question})


def finish(template: str) -> ScriptedToolCall:
    return ScriptedToolCall(
        "JourneyStep", {"done": True, "message": "All set.", "prompt_template": template}
    )


@pytest.fixture
async def llm() -> AsyncIterator[ScriptedLLM]:
    async with scripted_llm(ScriptedPolicy(), strict=False) as server:
        yield server


@pytest.fixture
def settings(
    make_settings: Callable[..., Settings], database_url: str, llm: ScriptedLLM
) -> Settings:
    return make_settings(
        database_url=database_url,
        llm_model="openai/scripted",
        llm_api_base=llm.api_base,
        llm_api_key="k",
        llm_max_retries=0,
    )


async def start(client: httpx.AsyncClient, headers: dict[str, str], **body: Any) -> dict[str, Any]:
    response = await client.post(START, json={"agent_type": "local", **body}, headers=headers)
    assert response.status_code == 200, response.text
    started: dict[str, Any] = response.json()
    assert started["done"] is False
    return started


async def say(
    client: httpx.AsyncClient, headers: dict[str, str], session_id: str, message: str
) -> httpx.Response:
    return await client.post(
        MESSAGE, json={"session_id": session_id, "message": message}, headers=headers
    )


def user_messages(llm: ScriptedLLM) -> list[str]:
    return [m.text for m in llm.last_request.messages if m.role == "user"]


async def test_local_and_cloud_journeys_open_with_different_questions(
    client: httpx.AsyncClient, llm: ScriptedLLM
) -> None:
    headers, _ = await sign_up(client)

    local = await start(client, headers, agent_type="local")
    cloud = await start(client, headers, agent_type="cloud")

    assert "files" in local["message"]
    assert "messages" in cloud["message"]
    assert local["message"] != cloud["message"]
    assert local["session_id"] != cloud["session_id"]
    assert llm.requests == []  # the first question needs no model call


async def test_refining_starts_from_the_agents_template_which_reaches_the_model(
    client: httpx.AsyncClient, llm: ScriptedLLM
) -> None:
    headers, _ = await sign_up(client)
    agent = await client.post(
        "/api/v1/agents/local",
        json=agent_body(prompt_template="Only invoices from ACME, priority high."),
        headers=headers,
    )
    started = await start(client, headers, agent_id=agent.json()["id"])
    assert "Only invoices from ACME, priority high." in started["message"]

    llm.policy = ScriptedPolicy(ask("Which other clients?"))
    reply = await say(client, headers, started["session_id"], "Add Globex too.")

    assert reply.json() == {
        "session_id": started["session_id"],
        "message": "Which other clients?",
        "done": False,
        "prompt_template": None,
    }
    sent = llm.last_request
    assert "Only invoices from ACME, priority high." in sent.system_prompt
    assert "refine" in sent.system_prompt
    assert user_messages(llm) == ["Add Globex too."]


async def test_an_agent_of_another_user_or_kind_cannot_be_refined(
    client: httpx.AsyncClient,
) -> None:
    headers, _ = await sign_up(client)
    other, _ = await sign_up(client)
    agent_id = (
        await client.post("/api/v1/agents/local", json=agent_body(), headers=headers)
    ).json()["id"]

    theirs = await client.post(
        START, json={"agent_type": "local", "agent_id": agent_id}, headers=other
    )
    wrong_kind = await client.post(
        START, json={"agent_type": "cloud", "agent_id": agent_id}, headers=headers
    )

    assert theirs.status_code == 404
    assert wrong_kind.status_code == 422
    # The declared 422 shape (HTTPValidationError), not a bare string.
    assert wrong_kind.json()["detail"] == [
        {
            "loc": ["body", "agent_id"],
            "msg": "agent_id names an agent of another type than agent_type",
            "type": "value_error",
        }
    ]


async def test_the_model_finishes_early_and_a_finished_session_answers_409(
    client: httpx.AsyncClient, llm: ScriptedLLM
) -> None:
    headers, _ = await sign_up(client)
    started = await start(client, headers)
    llm.policy = ScriptedPolicy(
        ask("What should become a task?"), finish("Turn every TODO line into a task.")
    )

    first = await say(client, headers, started["session_id"], "My meeting notes.")
    second = await say(client, headers, started["session_id"], "Lines starting with TODO.")

    assert first.json()["done"] is False
    assert second.status_code == 200, second.text
    assert second.json() == {
        "session_id": started["session_id"],
        "message": "All set.",
        "done": True,
        "prompt_template": "Turn every TODO line into a task.",
    }
    assert len(llm.requests) == 2
    assert llm.requests[1].tool_names == ["JourneyStep"]  # the model chose to finish
    again = await say(client, headers, started["session_id"], "One more thing")
    assert again.status_code == 409
    assert len(llm.requests) == 2


async def test_each_answers_model_call_is_stored_as_journey_usage(
    app: FastAPI, client: httpx.AsyncClient, llm: ScriptedLLM
) -> None:
    headers, user_id = await sign_up(client)
    started = await start(client, headers)
    llm.policy = ScriptedPolicy(ask("What should become a task?"), finish("Find the TODOs."))

    for answer in ("My meeting notes.", "Lines starting with TODO."):
        assert (await say(client, headers, started["session_id"], answer)).status_code == 200

    await app.state.usage_recorder.flush()
    async with app.state.engine.connect() as conn:
        rows = (
            await conn.execute(
                text(
                    "SELECT role, model, run_id, prompt_tokens FROM model_usage"
                    " WHERE user_id = :user ORDER BY id"
                ),
                {"user": user_id},
            )
        ).all()
    assert [(role, model, run_id) for role, model, run_id, _ in rows] == [
        ("journey", "openai/scripted", None)
    ] * 2
    assert [tokens for *_, tokens in rows] == llm.prompt_tokens


async def test_the_fifth_answer_forces_the_final_template(
    client: httpx.AsyncClient, llm: ScriptedLLM
) -> None:
    headers, _ = await sign_up(client)
    started = await start(client, headers, agent_type="cloud")
    llm.policy = ScriptedPolicy(
        *(ask(f"Question {n}?") for n in range(2, 6)),
        ScriptedToolCall(
            "FinalTemplate", {"message": "Done.", "prompt_template": "Mail from Ada is urgent."}
        ),
    )

    replies = [
        (await say(client, headers, started["session_id"], f"Answer {n}")).json()
        for n in range(1, 6)
    ]

    assert [r["done"] for r in replies] == [False, False, False, False, True]
    assert replies[-1]["prompt_template"] == "Mail from Ada is urgent."
    assert [r.tool_names for r in llm.requests] == [["JourneyStep"]] * 4 + [["FinalTemplate"]]
    assert "write the template now" in llm.requests[4].system_prompt
    assert user_messages(llm) == [f"Answer {n}" for n in range(1, 6)]
    assert (await say(client, headers, started["session_id"], "Answer 6")).status_code == 409


async def test_another_users_and_unknown_sessions_are_404(
    client: httpx.AsyncClient, llm: ScriptedLLM
) -> None:
    headers, _ = await sign_up(client)
    other, _ = await sign_up(client)
    started = await start(client, headers)

    assert (await say(client, other, started["session_id"], "hi")).status_code == 404
    assert (await say(client, headers, str(uuid.uuid4()), "hi")).status_code == 404
    assert llm.requests == []


@pytest.mark.parametrize("message", ["", "   ", "x" * 2001])
async def test_an_empty_or_overlong_answer_is_422(
    client: httpx.AsyncClient, llm: ScriptedLLM, message: str
) -> None:
    headers, _ = await sign_up(client)
    started = await start(client, headers)

    assert (await say(client, headers, started["session_id"], message)).status_code == 422
    assert llm.requests == []


async def test_a_session_survives_a_restart(settings: Settings, llm: ScriptedLLM) -> None:
    async def serve() -> AsyncIterator[httpx.AsyncClient]:
        app = create_app(settings)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                yield client

    llm.policy = ScriptedPolicy(ask("And the priorities?"), ask("Anything else?"))
    async for client in serve():
        headers, _ = await sign_up(client)
        started = await start(client, headers)
        await say(client, headers, started["session_id"], "Project plans.")

    async for client in serve():  # a new server on the same database
        reply = await say(client, headers, started["session_id"], "Deadlines first.")

    assert reply.status_code == 200, reply.text
    assert reply.json()["message"] == "Anything else?"
    assert user_messages(llm) == ["Project plans.", "Deadlines first."]
    assert "And the priorities?" in [m.text for m in llm.last_request.messages]


async def test_a_session_expires_after_an_hour(
    app: FastAPI, client: httpx.AsyncClient, llm: ScriptedLLM
) -> None:
    headers, _ = await sign_up(client)
    started = await start(client, headers)

    async def minutes_pass(minutes: int) -> None:
        async with app.state.engine.begin() as conn:
            await conn.execute(
                text(
                    "UPDATE batch_journey_sessions SET expires_at = expires_at - make_interval("
                    "mins => :m), created_at = created_at - make_interval(mins => :m)"
                ),
                {"m": minutes},
            )

    llm.policy = ScriptedPolicy(ask("Next?"))
    await minutes_pass(59)
    assert (await say(client, headers, started["session_id"], "Still here")).status_code == 200
    await minutes_pass(1)
    expired = await say(client, headers, started["session_id"], "Too late")

    assert expired.status_code == 410
    assert "expired" in expired.json()["detail"]
    assert len(llm.requests) == 1


async def test_nothing_the_user_wrote_is_readable_in_a_database_dump(
    app: FastAPI, client: httpx.AsyncClient, llm: ScriptedLLM
) -> None:
    headers, _ = await sign_up(client)
    started = await start(client, headers)
    llm.policy = ScriptedPolicy(finish("Quibblewick reports are tasks with priority high."))
    done = await say(client, headers, started["session_id"], "Zanzibar meeting minutes")
    assert done.json()["done"] is True

    dump = await dump_database(app)

    for plaintext in ("Zanzibar", "Quibblewick", "meeting notes", "documents"):
        assert plaintext.lower() not in dump.lower(), plaintext


@pytest.mark.parametrize(
    ("failure", "status"),
    [
        (ErrorReply(500, "down"), 503),  # the model call failed
        ("Sure, here is a question.", 502),  # an answer without the tool call
        (ScriptedToolCall("JourneyStep", {"done": True, "message": "Done."}), 502),  # no template
    ],
)
async def test_a_model_failure_is_reported_and_the_session_is_unchanged(
    client: httpx.AsyncClient, llm: ScriptedLLM, failure: Any, status: int
) -> None:
    headers, _ = await sign_up(client)
    started = await start(client, headers)
    llm.policy = ScriptedPolicy(failure, ask("What should become a task?"))

    failed = await say(client, headers, started["session_id"], "Lost answer")
    assert failed.status_code == status, failed.text
    assert "model" in failed.json()["detail"]

    retried = await say(client, headers, started["session_id"], "My notes")
    assert retried.json()["message"] == "What should become a task?"
    assert user_messages(llm) == ["My notes"]  # the failed answer was not kept


async def test_without_a_model_answers_are_503_naming_the_setting(
    make_settings: Callable[..., Settings], database_url: str
) -> None:
    app = create_app(make_settings(database_url=database_url))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            headers, _ = await sign_up(client)
            started = await start(client, headers)
            answer = await say(client, headers, started["session_id"], "notes")

    assert answer.status_code == 503
    assert "LLM_MODEL" in answer.json()["detail"]
