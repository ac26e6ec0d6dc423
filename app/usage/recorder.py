"""`UsageRecorder`: stores ledgers' model calls in the background, in batches.

A turn only hands its ledger over (`submit`, no waiting); one background task
writes what has queued up with one INSERT per batch. A failed write is logged
and counted (`adiuva_usage_rows_dropped`), never raised: usage accounting must
not break or slow the turns it accounts for. The queue is bounded, so a
database that is down costs memory only up to `max_queued` rows.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.observability import metrics
from app.usage.ledger import UsageLedger, bind_ledger
from app.usage.models import ModelUsage

logger = logging.getLogger(__name__)

MAX_QUEUED_ROWS = 10_000
MAX_BATCH_ROWS = 500
CLOSE_TIMEOUT_S = 5.0


class UsageRecorder:
    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        *,
        max_queued: int = MAX_QUEUED_ROWS,
    ) -> None:
        self._sessionmaker = sessionmaker
        self._queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(max_queued)
        self._writer: asyncio.Task[None] | None = None
        self._warned_full = False

    def start(self) -> None:
        self._writer = asyncio.create_task(self._write_forever())

    def submit(self, ledger: UsageLedger) -> None:
        """Queue the ledger's calls for storage; returns at once."""
        for call in ledger.calls:
            row = {
                "user_id": ledger.user_id,
                "request_id": ledger.request_id,
                "run_id": ledger.run_id,
                "role": call.role,
                "model": call.model,
                "prompt_tokens": call.prompt_tokens,
                "completion_tokens": call.completion_tokens,
                "cost_usd": Decimal(repr(call.cost_usd)),
                "duration_ms": call.duration_ms,
                "occurred_at": call.occurred_at,
            }
            try:
                self._queue.put_nowait(row)
            except asyncio.QueueFull:
                metrics.USAGE_ROWS_DROPPED.inc()
                if not self._warned_full:
                    self._warned_full = True
                    logger.warning("usage queue full: model calls are not being stored")

    @contextlib.contextmanager
    def attributed(self, ledger: UsageLedger) -> Iterator[UsageLedger]:
        """Attribute the model calls in this context to `ledger`; store them however it ends.

        The one way a request or run accounts for its model calls: calls made
        before a cancel or a failure are stored too.
        """
        try:
            with bind_ledger(ledger):
                yield ledger
        finally:
            self.submit(ledger)

    async def flush(self) -> None:
        """Wait until everything submitted so far has been written (or given up on)."""
        await self._queue.join()

    async def close(self) -> None:
        """Write what is queued (for a few seconds at most), then stop."""
        if self._writer is None:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.flush(), CLOSE_TIMEOUT_S)
        self._writer.cancel()
        await asyncio.gather(self._writer, return_exceptions=True)
        self._writer = None

    async def _write_forever(self) -> None:
        while True:
            rows = [await self._queue.get()]
            while len(rows) < MAX_BATCH_ROWS and not self._queue.empty():
                rows.append(self._queue.get_nowait())
            try:
                await self._write(rows)
            finally:
                for _ in rows:
                    self._queue.task_done()

    async def _write(self, rows: list[dict[str, Any]]) -> None:
        try:
            async with self._sessionmaker() as session:
                await session.execute(insert(ModelUsage), rows)
                await session.commit()
        except Exception as exc:
            metrics.USAGE_ROWS_DROPPED.inc(len(rows))
            logger.warning(
                "could not store model usage",
                extra={"rows": len(rows), "error": type(exc).__name__},
            )
        else:
            self._warned_full = False
