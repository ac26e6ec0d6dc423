"""What memory enrichment adds to a turn, on real PostgreSQL + pgvector.

    .venv/bin/python -m benchmarks.memory [--rows 10000] [--users 100] [--runs 200]

The table holds `--rows` associative snippets for the measured user and
`--rows / 100` for each of `--users - 1` others. Timed: everything
`TurnMemory.load` does except the embedding call (unwrapping the user's key,
core entries, the top-k associative search, recent episodes, active patterns,
decryption, rendering the prompt block). Beside it, in the same run, the same
search with the HNSW index switched off (an exact scan), the baseline the
index is there to beat. Target: under 15 ms p50.

Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import tempfile
import time
import uuid
from pathlib import Path

from cryptography.fernet import Fernet
from sqlalchemy import insert, text

import app  # noqa: F401 - sets LITELLM_LOCAL_MODEL_COST_MAP first
from app.auth.models import User
from app.core import migrations
from app.core.database import create_engine, create_sessionmaker
from app.core.embedded_db import EmbeddedPostgres
from app.core.keys import MasterKeyring
from app.memory.cipher import UserCipher
from app.memory.core import set_core
from app.memory.models import EMBEDDING_COLUMN_DIM, AssociativeMemory
from app.memory.prompt import render_context
from app.memory.recall import recall

DIM = EMBEDDING_COLUMN_DIM


def random_unit(rng: random.Random) -> list[float]:
    raw = [rng.gauss(0, 1) for _ in range(DIM)]
    norm = sum(x * x for x in raw) ** 0.5
    return [x / norm for x in raw]


async def seed(database_url: str, *, rows: int, users: int, keyring: MasterKeyring) -> uuid.UUID:
    engine = create_engine(database_url)
    rng = random.Random(7)
    measured = uuid.uuid4()
    async with create_sessionmaker(engine)() as session:
        for n in range(users):
            user_id = measured if n == 0 else uuid.uuid4()
            wrapped = keyring.new_wrapped_data_key()
            session.add(
                User(
                    id=user_id,
                    email=f"u{n}@example.com",
                    password_hash="!",  # noqa: S106 - no hash: these users never log in
                    wrapped_data_key=wrapped,
                )
            )
            await session.flush()
            cipher = await UserCipher.for_user(session=session, keyring=keyring, user_id=user_id)
            await session.execute(
                insert(AssociativeMemory),
                [
                    {
                        "id": uuid.uuid4(),
                        "user_id": user_id,
                        "content_encrypted": cipher.encrypt(f"User: question {rng.random()}"),
                        "embedding": random_unit(rng),
                    }
                    for _ in range(rows if n == 0 else max(1, rows // 100))
                ],
            )
            await session.commit()
            if n == 0:
                await set_core(
                    session=session,
                    cipher=cipher,
                    user_id=user_id,
                    key="timezone",
                    value="Europe/Berlin",
                )
    async with engine.begin() as conn:
        await conn.execute(text("ANALYZE"))
    await engine.dispose()
    return measured


async def time_enrichment(
    database_url: str, keyring: MasterKeyring, user_id: uuid.UUID, runs: int, *, exact: bool
) -> list[int]:
    engine = create_engine(database_url)
    sessionmaker = create_sessionmaker(engine)
    rng = random.Random(11)
    samples = []
    for _ in range(runs + 5):
        query = random_unit(rng)
        started = time.perf_counter_ns()
        async with sessionmaker() as session:
            if exact:
                await session.execute(text("SET LOCAL enable_indexscan = off"))
            cipher = await UserCipher.for_user(session=session, keyring=keyring, user_id=user_id)
            recalled = await recall(
                session=session, cipher=cipher, user_id=user_id, query_vector=query,
                top_k=5, recent_episodes=5, pattern_threshold=0.6,
            )  # fmt: skip
        render_context(recalled, budget_chars=4000)
        samples.append(time.perf_counter_ns() - started)
    await engine.dispose()
    return samples[5:]  # the first runs warm caches and the pool


def p50_p99(samples: list[int]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered) / 1e6, ordered[int(len(ordered) * 0.99) - 1] / 1e6


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--users", type=int, default=100)
    parser.add_argument("--runs", type=int, default=200)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        server = EmbeddedPostgres(Path(tmp))
        await asyncio.to_thread(server.start)
        try:
            await asyncio.to_thread(migrations.upgrade, server.database_url)
            keyring = MasterKeyring(Fernet.generate_key().decode())
            started = time.perf_counter()
            user_id = await seed(
                server.database_url, rows=args.rows, users=args.users, keyring=keyring
            )
            seeded_s = time.perf_counter() - started
            indexed = await time_enrichment(
                server.database_url, keyring, user_id, args.runs, exact=False
            )
            exact = await time_enrichment(
                server.database_url, keyring, user_id, args.runs, exact=True
            )
        finally:
            await asyncio.to_thread(server.stop)

    total_rows = args.rows + (args.users - 1) * max(1, args.rows // 100)
    (i50, i99), (e50, e99) = p50_p99(indexed), p50_p99(exact)
    print(
        f"memory enrichment, {args.rows} snippets for the user, "
        f"{total_rows} in all, {args.users} users"
    )
    print(f"  (seeded in {seeded_s:.0f} s; {args.runs} turns each; embedding call excluded)")
    print(f"  with the HNSW index : p50 {i50:6.2f} ms  p99 {i99:6.2f} ms   (target p50 < 15 ms)")
    print(f"  exact scan (no index): p50 {e50:6.2f} ms  p99 {e99:6.2f} ms")
    print(f"  index / exact        : {i50 / e50:.2f}x at p50")


if __name__ == "__main__":
    asyncio.run(main())
