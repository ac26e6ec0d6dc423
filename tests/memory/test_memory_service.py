"""The memory tiers on real PostgreSQL + pgvector: recall order, budget, isolation, rotation."""

from __future__ import annotations

import math
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text, update

from app.core.keys import MasterKeyring
from app.core.settings import Settings
from app.memory import core, exchanges
from app.memory import recall as memory_recall
from app.memory.cipher import UserCipher
from app.memory.models import EMBEDDING_COLUMN_DIM, Episode
from app.memory.prompt import render_context
from app.memory.recall import Recall
from app.memory.scheduled import derive_patterns
from tests.billing.conftest import register
from tests.master_key import rotate_master_key

pytestmark = pytest.mark.usefixtures("client")


def direction(*weights: float) -> list[float]:
    """A unit vector pointing mostly along the first few axes, by the given weights."""
    raw = [*weights, *([0.0] * (EMBEDDING_COLUMN_DIM - len(weights)))]
    norm = math.sqrt(sum(x * x for x in raw))
    return [x / norm for x in raw]


async def new_user(client: httpx.AsyncClient) -> uuid.UUID:
    tokens = (
        await client.post(
            "/api/v1/auth/register",
            json={"email": f"{uuid.uuid4().hex[:8]}@example.com", "password": "long enough pw"},
        )
    ).json()
    me = await client.get(
        "/api/v1/auth/me", headers={"Authorization": f"Bearer {tokens['access_token']}"}
    )
    return uuid.UUID(me.json()["id"])


async def cipher_for(app: FastAPI, user_id: uuid.UUID) -> UserCipher:
    async with app.state.sessionmaker() as session:
        return await UserCipher.for_user(
            session=session, keyring=app.state.keyring, user_id=user_id
        )


async def remember(
    app: FastAPI, user_id: uuid.UUID, request: str, vector: list[float] | None, **kw: object
) -> None:
    cipher = await cipher_for(app, user_id)
    async with app.state.sessionmaker() as session:
        await exchanges.remember_exchange(
            session=session,
            cipher=cipher,
            user_id=user_id,
            exchange=exchanges.Exchange(
                thread="t",
                request=request,
                answer=f"answer to {request}",
                at=datetime.now(UTC),
                vector=vector,
            ),
        )


async def recall(
    app: FastAPI, user_id: uuid.UUID, query: list[float] | None, **kw: object
) -> Recall:
    cipher = await cipher_for(app, user_id)
    async with app.state.sessionmaker() as session:
        return await memory_recall.recall(
            session=session,
            cipher=cipher,
            user_id=user_id,
            query_vector=query,
            top_k=int(kw.get("top_k", 3)),  # type: ignore[call-overload]
            recent_episodes=int(kw.get("recent", 5)),  # type: ignore[call-overload]
            pattern_threshold=0.6,
            exact_search_max_rows=int(kw.get("exact_search_max_rows", 2000)),  # type: ignore[call-overload]
        )


@pytest.mark.parametrize("exact_search_max_rows", [10_000, 0], ids=["exact", "hnsw"])
async def test_similar_exchanges_come_back_in_similarity_order(
    app: FastAPI, client: httpx.AsyncClient, exact_search_max_rows: int
) -> None:
    user = await new_user(client)
    await remember(app, user, "invoices", direction(1, 0, 0))
    await remember(app, user, "mostly invoices", direction(1, 0.5, 0))
    await remember(app, user, "holidays", direction(0, 0, 1))
    await remember(app, user, "half and half", direction(1, 0, 1))

    found = await recall(
        app, user, direction(1, 0.1, 0), top_k=3, exact_search_max_rows=exact_search_max_rows
    )

    asked = [snippet.split(" Assistant:")[0] for snippet in found.similar]
    assert asked == ["User: invoices", "User: mostly invoices", "User: half and half"]


async def test_another_users_memory_is_never_returned(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    ada, grace = await new_user(client), await new_user(client)
    await remember(app, ada, "ada's private matter", direction(1))
    cipher = await cipher_for(app, ada)
    async with app.state.sessionmaker() as session:
        await core.set_core(session=session, cipher=cipher, user_id=ada, key="pet", value="Rex")

    found = await recall(app, grace, direction(1), top_k=10)

    assert found == Recall(core={}, patterns=[], similar=[], episodes=[])


async def test_the_context_block_never_exceeds_its_budget() -> None:
    memory = Recall(
        core={f"key{n}": "v" * 300 for n in range(20)},
        patterns=["p" * 900] * 5,
        similar=["s" * 900] * 10,
        episodes=["e" * 900] * 10,
    )

    for budget in (200, 1000, 4000):
        block = render_context(memory, budget_chars=budget)
        assert len(block) <= budget
        assert block.startswith("What the user asked you to remember:")
    small = render_context(
        Recall(core={"timezone": "Europe/Berlin"}, patterns=[], similar=[], episodes=["x"]),
        budget_chars=4000,
    )
    assert small == (
        "What the user asked you to remember:\n- timezone: Europe/Berlin\nRecent exchanges:\n- x"
    )


async def test_nothing_remembered_is_readable_in_the_database(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    user = await new_user(client)
    secret = "my accountant is Zelda Quibble"
    await remember(app, user, secret, direction(1))
    cipher = await cipher_for(app, user)
    async with app.state.sessionmaker() as session:
        await core.set_core(
            session=session, cipher=cipher, user_id=user, key="accountant", value="Zelda Quibble"
        )
    for week in range(4):
        await remember(app, user, "weekly report please", None)
        async with app.state.engine.begin() as conn:
            await conn.execute(
                update(Episode)
                .where(Episode.created_at >= datetime.now(UTC) - timedelta(seconds=5))
                .values(created_at=datetime(2026, 11, 2, 9, tzinfo=UTC) + timedelta(weeks=week))
            )
    async with app.state.sessionmaker() as session:
        assert (
            await derive_patterns(
                session=session, cipher=cipher, user_id=user, now=datetime(2026, 11, 30, tzinfo=UTC)
            )
            == 1
        )

    dump = await dump_database(app)

    for plaintext in ("Zelda", "Quibble", "accountant", "weekly report", "Monday"):
        assert plaintext.lower() not in dump.lower(), plaintext


async def dump_database(app: FastAPI) -> str:
    """Every value of every table as text; binary values byte for byte (latin-1)."""
    async with app.state.engine.connect() as conn:
        tables = [
            row[0]
            for row in await conn.execute(
                text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
            )
        ]
        parts: list[str] = []
        for table in tables:
            rows = await conn.execute(text(f'SELECT * FROM "{table}"'))  # noqa: S608 - catalog names
            for row in rows:
                parts.extend(
                    bytes(v).decode("latin-1") if isinstance(v, bytes | memoryview) else str(v)
                    for v in row
                )
    return "\n".join(parts)


async def test_proactive_pass_finds_a_weekly_habit(app: FastAPI, client: httpx.AsyncClient) -> None:
    user = await new_user(client)
    cipher = await cipher_for(app, user)
    mondays = [datetime(2026, 10, 5, 9, tzinfo=UTC) + timedelta(weeks=w) for w in range(6)]
    for n, monday in enumerate(mondays):
        if n != 2:  # skipped one Monday
            await store_episode(app, cipher, user, "Prepare the weekly report!", monday)
        await store_episode(app, cipher, user, f"random question {n}", monday + timedelta(days=2))

    async with app.state.sessionmaker() as session:
        count = await derive_patterns(
            session=session, cipher=cipher, user_id=user, now=datetime(2026, 11, 14, tzinfo=UTC)
        )
    found = await recall(app, user, None)

    assert count == 1
    assert found.patterns == [
        "On Mondays the user often asks “Prepare the weekly report!”"
        " (5 of their last 6 active weeks)."
    ]


async def store_episode(
    app: FastAPI, cipher: UserCipher, user: uuid.UUID, request: str, at: datetime
) -> None:
    async with app.state.sessionmaker() as session:
        await exchanges.remember_exchange(
            session=session,
            cipher=cipher,
            user_id=user,
            exchange=exchanges.Exchange(
                thread="t", request=request, answer="ok", at=at, vector=None
            ),
        )
        await session.execute(
            update(Episode)
            .where(
                Episode.user_id == user,
                Episode.created_at > datetime.now(UTC) - timedelta(seconds=5),
            )
            .values(created_at=at)
        )
        await session.commit()


async def test_master_key_rotation_keeps_memory_readable(
    app: FastAPI, client: httpx.AsyncClient, settings: Settings
) -> None:
    user = await new_user(client)
    await remember(app, user, "remember the blue folder", direction(1))

    new_key = await rotate_master_key(settings)

    async with app.state.sessionmaker() as session:
        cipher = await UserCipher.for_user(
            session=session, keyring=MasterKeyring(new_key), user_id=user
        )
        found = await memory_recall.recall(
            session=session, cipher=cipher, user_id=user, query_vector=direction(1),
            top_k=1, recent_episodes=1, pattern_threshold=0.6,
        )  # fmt: skip
    assert found.similar == [
        "User: remember the blue folder Assistant: answer to remember the blue folder"
    ]
    assert "the user asked “remember the blue folder”" in found.episodes[0]


async def test_a_key_with_a_slash_stored_earlier_can_still_be_forgotten_alone(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    # Keys are kept free of slashes now (`update_core_memory`); one stored before that
    # is still the user's to forget, by its own URL.
    account = await register(client)
    cipher = await cipher_for(app, account.user_id)
    async with app.state.sessionmaker() as session:
        for key, value in (("a/b", "x"), ("b", "y")):
            await core.set_core(
                session=session, cipher=cipher, user_id=account.user_id, key=key, value=value
            )

    forgotten = await client.delete("/api/v1/memory/core/a/b", headers=account.auth)
    listed = await client.get("/api/v1/memory", headers=account.auth)

    assert forgotten.status_code == 204
    assert listed.json()["core"] == {"b": "y"}
