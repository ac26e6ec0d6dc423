"""The proactive pass: habits derived from episodes, on a schedule.

The rule: an intent (a request's first words, compared by digest) asked on
the same weekday in at least `MIN_WEEKS` different weeks of the last
`WINDOW_WEEKS` becomes a pattern, with confidence = weeks it was asked on that
weekday / weeks the user was active in the window. Patterns no longer
observed are removed. The pass is idempotent, so several server instances
running it at once only repeat work.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections import defaultdict
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.core.keys import MasterKeyring
from app.memory.cipher import UserCipher
from app.memory.models import Episode, ProactivePattern

logger = logging.getLogger(__name__)

WINDOW_WEEKS = 8
MIN_WEEKS = 3
WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


def _week(moment: datetime) -> tuple[int, int]:
    iso = moment.isocalendar()
    return iso.year, iso.week


async def derive_patterns(
    *, session: AsyncSession, cipher: UserCipher, user_id: uuid.UUID, now: datetime
) -> int:
    """Recompute one user's patterns from their episodes; returns how many there are."""
    since = now - timedelta(weeks=WINDOW_WEEKS)
    rows = (
        await session.execute(
            select(
                Episode.intent_digest,
                Episode.weekday,
                Episode.created_at,
                Episode.request_encrypted,
            )
            .where(Episode.user_id == user_id, Episode.created_at >= since)
            .order_by(Episode.created_at)
        )
    ).all()
    active_weeks = {_week(created_at) for _, _, created_at, _ in rows}
    weeks: defaultdict[tuple[str, int], set[tuple[int, int]]] = defaultdict(set)
    latest_request: dict[tuple[str, int], bytes] = {}
    for intent, weekday, created_at, request in rows:
        weeks[(intent, weekday)].add(_week(created_at))
        latest_request[(intent, weekday)] = request
    kept: list[str] = []
    for (intent, weekday), seen in weeks.items():
        if len(seen) < MIN_WEEKS:
            continue
        digest = cipher.digest(f"{intent}:{weekday}")
        asked = cipher.decrypt(latest_request[(intent, weekday)])
        description = (
            f"On {WEEKDAYS[weekday]}s the user often asks “{asked}”"
            f" ({len(seen)} of their last {len(active_weeks)} active weeks)."
        )
        statement = insert(ProactivePattern).values(
            id=uuid.uuid4(),
            user_id=user_id,
            pattern_digest=digest,
            description_encrypted=cipher.encrypt(description),
            source_encrypted=cipher.encrypt(f"episodes: {len(seen)} weeks on {WEEKDAYS[weekday]}"),
            confidence=len(seen) / len(active_weeks),
            occurrences=len(seen),
        )
        await session.execute(
            statement.on_conflict_do_update(
                index_elements=[ProactivePattern.user_id, ProactivePattern.pattern_digest],
                set_={
                    "description_encrypted": statement.excluded.description_encrypted,
                    "source_encrypted": statement.excluded.source_encrypted,
                    "confidence": statement.excluded.confidence,
                    "occurrences": statement.excluded.occurrences,
                },
            )
        )
        kept.append(digest)
    await session.execute(
        delete(ProactivePattern).where(
            ProactivePattern.user_id == user_id, ProactivePattern.pattern_digest.not_in(kept)
        )
    )
    await session.commit()
    return len(kept)


async def derive_all_patterns(
    *, sessionmaker: async_sessionmaker[AsyncSession], keyring: MasterKeyring, now: datetime
) -> None:
    """One pass over every user with recent episodes; one user's failure skips only them."""
    async with sessionmaker() as session:
        users = list(
            await session.scalars(
                select(Episode.user_id)
                .where(Episode.created_at >= now - timedelta(weeks=WINDOW_WEEKS))
                .distinct()
            )
        )
    for user_id in users:
        try:
            async with sessionmaker() as session:
                cipher = await UserCipher.for_user(
                    session=session, keyring=keyring, user_id=user_id
                )
                await derive_patterns(session=session, cipher=cipher, user_id=user_id, now=now)
        except Exception:
            logger.exception("proactive pass failed for a user", extra={"user_id": str(user_id)})


async def run_pattern_pass_forever(
    *, sessionmaker: async_sessionmaker[AsyncSession], keyring: MasterKeyring, interval_s: float
) -> None:
    """The scheduled job (started by the app's lifespan)."""
    while True:
        await asyncio.sleep(interval_s)
        try:
            await derive_all_patterns(
                sessionmaker=sessionmaker, keyring=keyring, now=datetime.now(UTC)
            )
        except Exception:  # a failed pass (the database down, say) must not end the job
            logger.exception("deriving habits failed; trying again at the next pass")
