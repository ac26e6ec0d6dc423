"""Starting batch runs: the scheduler pass, catch-up on `device_hello`, the manual trigger.

Every start goes through a claim in PostgreSQL (`app.batch.service`), so
several server instances on one database never run one slot twice. An
instance only claims agents whose desktop is connected to it. Runs of one
desktop go one at a time, in the order they were claimed. Each pass also
refreshes this instance's runs and ends those a stopped instance left
`running`, so none blocks its agent for ever.

Every run's extraction calls are accounted to the run (`model_usage` rows
with role `extraction` and the run's id); `adiuva_batch_runs_total` counts
runs by how they ended and `adiuva_batch_scheduler_lag_seconds` how late the
scheduler pass claimed each due slot.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from langchain_core.language_models import BaseChatModel
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.batch import delivery, service
from app.batch.cloud_run import CloudRun
from app.batch.delivery import SuggestionDelivery
from app.batch.exceptions import DeviceNotConnectedError
from app.batch.models import RunStatus, RunTrigger
from app.batch.runner import DEVICE_DISCONNECTED, LocalRun, RunLimits, RunOutcome
from app.core.errors import ModelNotConfiguredError
from app.core.keys import MasterKeyring
from app.core.settings import Settings
from app.device.link import DeviceLink
from app.device.registry import DeviceRegistry
from app.memory.cipher import UserCipher
from app.observability import metrics
from app.usage.callbacks import UsageCallback
from app.usage.ledger import ROLE_EXTRACTION, UsageLedger
from app.usage.recorder import UsageRecorder

logger = logging.getLogger(__name__)

CLAIMS_PER_PASS = 200
"""Agents one pass may claim; the rest wait for the next pass (they stay due)."""
_INTERNAL_ERROR = "internal error: the run failed unexpectedly"


def _utc_now() -> datetime:
    return datetime.now(UTC)


def run_limits(settings: Settings) -> RunLimits:
    return RunLimits(
        max_files=settings.batch_max_files_per_run,
        max_file_bytes=settings.batch_max_file_bytes,
        max_total_bytes=settings.batch_max_run_bytes,
        idle_timeout_s=settings.batch_idle_timeout_s,
        chunk_chars=settings.batch_chunk_chars,
    )


@dataclass(frozen=True, slots=True)
class _Launched:
    agent_id: uuid.UUID
    task: asyncio.Task[None]


class BatchScheduler:
    """Claims and runs this instance's batch runs; one per app, built in the lifespan.

    `model` is None when no language model is configured: nothing is claimed
    then (scheduled agents stay due), and a manual run is refused with 503.
    """

    def __init__(
        self,
        *,
        settings: Settings,
        sessionmaker: async_sessionmaker[AsyncSession],
        keyring: MasterKeyring,
        registry: DeviceRegistry,
        usage: UsageRecorder,
        model: BaseChatModel | None,
        not_configured: str | None = None,
        clock: Callable[[], datetime] = _utc_now,
    ) -> None:
        self._settings = settings
        self._sessionmaker = sessionmaker
        self._keyring = keyring
        self._registry = registry
        self._usage = usage
        self._model = model
        self._not_configured = not_configured
        self._clock = clock
        self._limits = run_limits(settings)
        self._launched: dict[uuid.UUID, _Launched] = {}
        # One run at a time per desktop; idle desktops cost nothing (weak values).
        # Cloud runs of one user take turns too (their device is None).
        self._device_turns: weakref.WeakValueDictionary[
            tuple[uuid.UUID, str | None], asyncio.Lock
        ] = weakref.WeakValueDictionary()
        self.delivery = SuggestionDelivery(
            sessionmaker=sessionmaker,
            keyring=keyring,
            registry=registry,
            tool_call_timeout_s=settings.tool_call_timeout_s,
            ttl=timedelta(seconds=settings.cloud_delivery_ttl_s),
            clock=clock,
        )

    @property
    def running(self) -> list[uuid.UUID]:
        """Runs this instance has claimed and not finished (waiting for their turn or going)."""
        return list(self._launched)

    # -- the three ways a run starts --------------------------------------------------

    async def run_pass(self) -> list[service.ClaimedRun]:
        """One scheduler pass: refresh our runs, recover orphans, start what is due here."""
        now = self._clock()
        async with self._sessionmaker() as session:
            await service.touch_runs(session=session, run_ids=self.running, now=now)
        async with self._sessionmaker() as session:
            recovered = await service.recover_stale_runs(
                session=session,
                keyring=self._keyring,
                stale_before=now - timedelta(seconds=self._settings.batch_stale_run_s),
                now=now,
            )
        if recovered:
            metrics.BATCH_RUNS.labels(RunStatus.ERROR.value).inc(recovered)
        async with self._sessionmaker() as session:
            await delivery.drop_expired(session=session, now=now)
        return await self._claim(self._registry.connected(), RunTrigger.SCHEDULE, now, cloud=True)

    async def catch_up(self, link: DeviceLink) -> None:
        """On `device_hello`: the user's waiting cloud suggestions are delivered, then the
        device's overdue agents run, one after another."""
        await self.delivery.deliver(link.user_id)
        await self._claim([(link.user_id, link.device_id)], RunTrigger.HELLO, self._clock())

    async def start_manual(self, *, user_id: uuid.UUID, agent_id: uuid.UUID) -> uuid.UUID:
        """Start a run now (`POST /agents/{id}/run`); its id.

        404 for an agent that is not the user's, 409 when its desktop is not
        connected here or a run of it is going, 503 without a model.
        """
        async with self._sessionmaker() as session:
            device_id = await service.agent_device(
                session=session, user_id=user_id, agent_id=agent_id
            )
            if self._model is None:
                raise ModelNotConfiguredError(self._not_configured)
            if device_id is not None and not self._registry.is_online(user_id, device_id):
                raise DeviceNotConnectedError
            claimed = await service.start_manual_run(
                session=session, user_id=user_id, agent_id=agent_id, now=self._clock()
            )
        self._launch(claimed)
        return claimed.run_id

    async def _claim(
        self,
        devices: list[tuple[uuid.UUID, str]],
        trigger: RunTrigger,
        now: datetime,
        *,
        cloud: bool = False,
    ) -> list[service.ClaimedRun]:
        if self._model is None or not (devices or cloud):
            return []
        async with self._sessionmaker() as session:
            claimed = await service.claim_due_runs(
                session=session,
                devices=devices,
                now=now,
                trigger=trigger,
                limit=CLAIMS_PER_PASS,
                cloud=cloud,
            )
        for run in claimed:
            # The scheduler's own lateness; a catch-up on hello is as late as the desktop was away.
            if trigger is RunTrigger.SCHEDULE and run.due_at is not None:
                metrics.BATCH_SCHEDULER_LAG.observe(max(0.0, (now - run.due_at).total_seconds()))
            self._launch(run)
        return claimed

    # -- running ---------------------------------------------------------------------

    def _launch(self, claimed: service.ClaimedRun) -> None:
        task = asyncio.create_task(self._run(claimed))
        self._launched[claimed.run_id] = _Launched(claimed.agent_id, task)
        task.add_done_callback(lambda _: self._launched.pop(claimed.run_id, None))

    def _turn(self, user_id: uuid.UUID, device_id: str | None) -> asyncio.Lock:
        key = (user_id, device_id)
        lock = self._device_turns.get(key)
        if lock is None:
            lock = self._device_turns[key] = asyncio.Lock()
        return lock

    async def _run(self, claimed: service.ClaimedRun) -> None:
        async with self._turn(claimed.user_id, claimed.device_id):
            async with self._sessionmaker() as session:
                if not await service.begin_run(
                    session=session, run_id=claimed.run_id, now=self._clock()
                ):
                    return  # ended while it waited (recovered, or its agent deleted)
                cipher = await UserCipher.for_user(
                    session=session, keyring=self._keyring, user_id=claimed.user_id
                )
                config: service.LocalAgentConfig | service.CloudAgentConfig | None
                if claimed.device_id is None:
                    config = await service.cloud_agent_config(
                        session=session, cipher=cipher, agent_id=claimed.agent_id
                    )
                else:
                    config = await service.local_agent_config(
                        session=session, cipher=cipher, agent_id=claimed.agent_id
                    )
            if config is None:
                return  # the agent was deleted, and its run log with it
            try:
                outcome = await self._execute(claimed, config, cipher)
            except asyncio.CancelledError:
                await self._finish(claimed, cipher, _ended(service.INTERRUPTED))
                raise
            except Exception:
                logger.exception("a batch run failed", extra={"run_id": str(claimed.run_id)})
                outcome = _ended(_INTERNAL_ERROR)
            await self._finish(claimed, cipher, outcome)

    async def _execute(
        self,
        claimed: service.ClaimedRun,
        config: service.LocalAgentConfig | service.CloudAgentConfig,
        cipher: UserCipher,
    ) -> RunOutcome:
        assert self._model is not None  # nothing is claimed without one
        ledger = UsageLedger(user_id=claimed.user_id, run_id=str(claimed.run_id))
        # Local and cloud runs alike; stored however the run ends: calls made before a
        # cancel or a failure count too.
        callbacks = [UsageCallback(ledger, prices=self._settings.llm_prices, role=ROLE_EXTRACTION)]
        with self._usage.attributed(ledger):
            if isinstance(config, service.CloudAgentConfig):
                return await CloudRun(
                    run_id=claimed.run_id,
                    config=config,
                    settings=self._settings,
                    model=self._model,
                    sessionmaker=self._sessionmaker,
                    cipher=cipher,
                    delivery=self.delivery,
                    clock=self._clock,
                    callbacks=callbacks,
                ).execute()
            link = self._registry.device(claimed.user_id, claimed.device_id)
            if link is None or link.disconnected.is_set():
                return _ended(DEVICE_DISCONNECTED)
            return await LocalRun(
                run_id=claimed.run_id,
                config=config,
                link=link,
                model=self._model,
                sessionmaker=self._sessionmaker,
                cipher=cipher,
                limits=self._limits,
                tool_call_timeout_s=self._settings.tool_call_timeout_s,
                clock=self._clock,
                callbacks=callbacks,
            ).execute()

    async def _finish(
        self, claimed: service.ClaimedRun, cipher: UserCipher, outcome: RunOutcome
    ) -> None:
        async with self._sessionmaker() as session:
            finished = await service.finish_run(
                session=session,
                cipher=cipher,
                run_id=claimed.run_id,
                status=outcome.status,
                items_processed=outcome.items_processed,
                items_created=outcome.items_created,
                errors=outcome.errors,
                now=self._clock(),
                items_waiting=outcome.items_waiting,
            )
        if finished:  # not when another instance's recovery ended it first (and counted it)
            metrics.BATCH_RUNS.labels(outcome.status.value).inc()
        logger.info(
            "batch run ended",
            extra={
                "run_id": str(claimed.run_id),
                "status": outcome.status.value,
                "items_created": outcome.items_created,
            },
        )

    def stop_agent(self, agent_id: uuid.UUID) -> None:
        """Stop this instance's runs of an agent (it was deleted)."""
        for launched in list(self._launched.values()):
            if launched.agent_id == agent_id:
                launched.task.cancel()

    async def close(self) -> None:
        """Stop every run (the server is shutting down); each is logged as interrupted."""
        tasks = [launched.task for launched in self._launched.values()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def run_forever(self) -> None:
        """The scheduled job (started by the app's lifespan)."""
        while True:
            await asyncio.sleep(self._settings.batch_scheduler_interval_s)
            try:
                await self.run_pass()
            except Exception:  # a failed pass (the database down, say) must not end the job
                logger.exception("a batch scheduler pass failed; trying again at the next one")


def _ended(reason: str) -> RunOutcome:
    return RunOutcome(status=RunStatus.ERROR, items_processed=0, items_created=0, errors=[reason])
