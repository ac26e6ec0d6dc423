"""Memory end to end: what the user tells one desktop, another desktop's turn uses."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import text

from app.core.settings import Settings
from app.memory.turns import TurnMemory
from tests.e2e.conftest import Live, running
from tests.llm.scripted_openai import hash_embedding
from tests.master_key import rotate_master_key
from tests.memory.test_memory_service import dump_database

EMBEDDINGS = {"embedding_model": "openai/text-embedding-3-small"}
# A port held for the whole session and never listened on: connecting to it is refused,
# whatever else runs on the machine (a port merely free when the tests were collected
# may be someone's server by the time the test runs).
_REFUSING = socket.socket()
_REFUSING.bind(("127.0.0.1", 0))


async def table_counts(live: Live) -> dict[str, int]:
    async with live.app.state.engine.connect() as conn:
        return {
            table: int(await conn.scalar(text(f"SELECT count(*) FROM {table}")) or 0)  # noqa: S608
            for table in ("core_memory", "associative_memory", "episodes", "proactive_patterns")
        }


async def test_a_preference_told_on_one_desktop_is_used_on_another(assistant: Live) -> None:
    account = await assistant.account()
    office = await assistant.desktop(account, "office")
    laptop = await assistant.desktop(account, "laptop")
    assistant.policy.plan(
        "remember I like answers in German", memory=("preferred_language", "German")
    )

    await office.chat("remember I like answers in German")
    await laptop.chat("hello")

    prompt = assistant.llm.requests[-1].system_prompt  # type: ignore[union-attr]
    assert "What the user asked you to remember:\n- preferred_language: German" in prompt
    assert "Recent exchanges:" in prompt


@pytest.mark.parametrize("live_settings", [EMBEDDINGS])
async def test_similar_past_exchanges_reach_the_prompt_and_nothing_is_readable(
    assistant: Live,
) -> None:
    client = await assistant.desktop(await assistant.account())

    await client.chat("my car is a red Volvo")
    await assistant.until(lambda: len(assistant.llm.embedding_requests) >= 1)  # type: ignore[union-attr]
    await wait_for_rows(assistant, "associative_memory", 1)
    await client.chat("what car do I drive?", thread_id="another-thread")

    prompt = assistant.llm.requests[-1].system_prompt  # type: ignore[union-attr]
    assert "Earlier exchanges similar to this message:\n- User: my car is a red Volvo" in prompt
    await wait_for_rows(assistant, "associative_memory", 2)
    dump = await dump_database(assistant.app)
    for plaintext in ("Volvo", "what car do I drive"):
        assert plaintext not in dump, plaintext  # checkpoints included: threads are encrypted


async def wait_for_rows(live: Live, table: str, count: int) -> None:
    async with asyncio.timeout(5):
        while (await table_counts(live))[table] < count:  # noqa: ASYNC110 - polling the database
            await asyncio.sleep(0.02)


@pytest.mark.parametrize(
    "live_settings",
    [
        {
            "embedding_model": "openai/text-embedding-3-small",
            "embedding_api_base": f"http://127.0.0.1:{_REFUSING.getsockname()[1]}/v1",
        }
    ],
)
async def test_a_failing_embedding_provider_does_not_break_the_turn(assistant: Live) -> None:
    client = await assistant.desktop(await assistant.account())

    answer = await client.chat("hello")

    assert answer.types[-1] == "stream_end"
    assert answer.errors == []
    await wait_for_rows(assistant, "episodes", 1)
    assert (await table_counts(assistant))["associative_memory"] == 0


async def test_storing_memory_never_delays_stream_end(
    assistant: Live, monkeypatch: pytest.MonkeyPatch
) -> None:
    never = asyncio.Event()

    async def stuck(*args: Any, **kwargs: Any) -> None:
        await never.wait()

    monkeypatch.setattr(TurnMemory, "remember", stuck)
    client = await assistant.desktop(await assistant.account())

    answer = await asyncio.wait_for(client.chat("hello"), 10)

    assert answer.types[-1] == "stream_end"


async def test_user_sees_and_forgets_memory(assistant: Live) -> None:
    account = await assistant.account()
    other = await assistant.account()
    client = await assistant.desktop(account)
    assistant.policy.plan(
        "remember my timezone is Europe/Berlin", memory=("timezone", "Europe/Berlin")
    )
    assistant.policy.plan("remember I like tea", memory=("drink", "tea"))
    await client.chat("remember my timezone is Europe/Berlin")
    await client.chat("remember I like tea")
    await wait_for_rows(assistant, "episodes", 2)

    listed = (await assistant.get("/api/v1/memory", account.token)).json()
    others = (await assistant.get("/api/v1/memory", other.token)).json()
    forget_one = await assistant.delete("/api/v1/memory/core/drink", account.token)
    missing = await assistant.delete("/api/v1/memory/core/drink", account.token)
    after_one = await table_counts(assistant)
    forget_all = await assistant.delete("/api/v1/memory", account.token)

    assert listed["core"] == {"timezone": "Europe/Berlin", "drink": "tea"}
    assert listed["counts"] == {"core": 2, "associative": 0, "episodic": 2, "proactive": 0}
    assert others == {
        "core": {},
        "counts": {"core": 0, "associative": 0, "episodic": 0, "proactive": 0},
    }
    assert (forget_one.status_code, missing.status_code) == (204, 404)
    assert after_one["core_memory"] == 1
    assert forget_all.status_code == 204
    assert await table_counts(assistant) == dict.fromkeys(after_one, 0)


@pytest.mark.parametrize("live_settings", [EMBEDDINGS])
async def test_embed_endpoint(assistant: Live) -> None:
    account = await assistant.account()

    ok = await assistant.post("/api/v1/storage/vectors/embed", account.token, {"text": "hello"})
    empty = await assistant.post("/api/v1/storage/vectors/embed", account.token, {"text": "  "})
    huge = await assistant.post(
        "/api/v1/storage/vectors/embed", account.token, {"text": "x" * 20_000}
    )
    anonymous = await assistant.post("/api/v1/storage/vectors/embed", None, {"text": "hello"})

    assert ok.status_code == 200
    assert ok.json()["vector"] == pytest.approx(hash_embedding("hello", 1536), abs=1e-7)
    assert assistant.llm.embedding_requests[0].encoding_format == "base64"  # type: ignore[union-attr]
    assert (empty.status_code, huge.status_code, anonymous.status_code) == (422, 413, 401)
    assistant.llm.embedder = lambda text, dims: 1 / 0  # type: ignore[union-attr,return-value]
    failing = await assistant.post("/api/v1/storage/vectors/embed", account.token, {"text": "hi"})
    assert failing.status_code == 502
    assert failing.json() == {"detail": "The embedding provider failed; try again later."}


@pytest.mark.parametrize("live_settings", [EMBEDDINGS])
async def test_a_provider_answering_in_floats_is_understood_too(assistant: Live) -> None:
    account = await assistant.account()
    assistant.llm.floats_only = True  # type: ignore[union-attr]

    ok = await assistant.post("/api/v1/storage/vectors/embed", account.token, {"text": "hello"})

    assert ok.status_code == 200
    assert ok.json()["vector"] == pytest.approx(hash_embedding("hello", 1536), abs=1e-7)


async def test_embed_endpoint_without_a_model_is_503(assistant: Live) -> None:
    account = await assistant.account()

    response = await assistant.post("/api/v1/storage/vectors/embed", account.token, {"text": "hi"})
    health = (await assistant.get("/api/v1/health")).json()

    assert response.status_code == 503
    assert "EMBEDDING_MODEL" in response.json()["detail"]
    assert health["embeddings"] == "not_configured"


async def test_master_key_rotation_keeps_threads_and_memory(
    assistant: Live, assistant_settings: Callable[[str], Settings]
) -> None:
    account = await assistant.account()
    client = await assistant.desktop(account)
    assistant.policy.plan("remember I like tea", memory=("drink", "tea"))
    await client.chat("remember I like tea", thread_id="kept")

    new_key = await rotate_master_key(assistant_settings("unused"))

    llm = assistant.llm
    assert llm is not None
    new_only = assistant_settings(llm.api_base).model_copy(update={"encryption_key": new_key})
    async with running(new_only, assistant):
        again = await assistant.desktop(account)
        answer = await again.chat("what do I like?", thread_id="kept")
    prompt = llm.requests[-1]
    assert answer.errors == []
    assert "- drink: tea" in prompt.system_prompt
    assert "remember I like tea" in [m.text for m in prompt.messages if m.role == "user"]


@pytest.mark.parametrize("live_settings", [EMBEDDINGS])
async def test_notes_are_indexed_on_the_desktop_when_embeddings_are_on(assistant: Live) -> None:
    client = await assistant.desktop(await assistant.account())
    assistant.policy.plan(
        "write a note", agent="note_agent", tool="create_note",
        args={"title": "Ideas", "content": "# Ideas\\nship it"},
    )  # fmt: skip

    answer = await client.chat("write a note")

    assert [c["action"] for c in answer.tool_calls] == ["insert", "vector_upsert"]
    upsert = answer.tool_calls[1]
    [note] = client.store.rows("notes")
    assert upsert["data"] == {"id": note["id"], "projectId": None, "content": "# Ideas\\nship it"}
    assert len(upsert["vector"]) == 1536
    assert [m["action"] for m in answer.mutations] == ["insert"]
