"""One run of a cloud agent: read new messages, extract, queue the suggestions, deliver.

The same extraction, dedupe and suggestion rows as a local run
(`app.batch.runner`): each message (subject, sender and date in the prompt) is
one extraction; its provider id, as a keyed digest, marks it processed in the
same transaction that queues its items, so a message is never extracted twice
and its items are never queued twice. The desktop need not be online: the
items wait in the queue (`app.batch.delivery`) and go out as soon as one of
the user's desktops is connected.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Sequence
from datetime import date, datetime
from zoneinfo import ZoneInfo

import httpx
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.language_models import BaseChatModel
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from agents.extraction import ExtractionFailedError, ExtractionRequest, Extractor
from agents.llm import MODEL_ERRORS
from app.batch import delivery, oauth, service
from app.batch.exceptions import (
    ConnectionRefusedByProviderError,
    ProviderUnavailableError,
    UnknownConnectionError,
)
from app.batch.mailboxes import (
    FetchLimits,
    MailboxError,
    MailMessage,
    ProviderApi,
    fetch_messages,
    window_start,
)
from app.batch.models import CloudProvider, RunStatus
from app.batch.runner import Projects, RunOutcome, capped_errors, suggestion, suggestion_rows
from app.core.settings import Settings
from app.memory.cipher import UserCipher
from protocol.frames import Table

logger = logging.getLogger(__name__)


def api_base(settings: Settings, provider: CloudProvider) -> str:
    return (
        settings.gmail_api_base if provider is CloudProvider.GMAIL else settings.ms_graph_api_base
    )


def message_text(message: MailMessage) -> str:
    """What the model reads of a message: its subject, sender and date, then its text."""
    return (
        f"Subject: {message.subject}\nFrom: {message.sender}\nDate: {message.sent_at}\n\n"
        f"{message.body}"
    )


class CloudRun:
    """One claimed run of a cloud agent."""

    def __init__(
        self,
        *,
        run_id: uuid.UUID,
        config: service.CloudAgentConfig,
        settings: Settings,
        model: BaseChatModel,
        sessionmaker: async_sessionmaker[AsyncSession],
        cipher: UserCipher,
        delivery: delivery.SuggestionDelivery,
        clock: Callable[[], datetime],
        callbacks: Sequence[BaseCallbackHandler] = (),
    ) -> None:
        self._run_id = run_id
        self._config = config
        self._settings = settings
        self._model = model
        self._sessionmaker = sessionmaker
        self._cipher = cipher
        self._delivery = delivery
        self._clock = clock
        # `callbacks` see every extraction call (the run's usage accounting).
        self._callbacks = callbacks
        self._zone = ZoneInfo(config.timezone)
        self._errors: list[str] = []
        self.items_processed = 0
        self.items_created = 0

    async def execute(self) -> RunOutcome:
        try:
            messages = await self._fetch()
        except (
            MailboxError,
            ConnectionRefusedByProviderError,
            ProviderUnavailableError,
            UnknownConnectionError,
        ) as exc:
            self._errors.append(str(exc) if isinstance(exc, MailboxError) else exc.detail)
            messages = []
        if messages:
            extractor = Extractor(self._model, self._config.data_types, callbacks=self._callbacks)
            for message in messages:
                await self._process(extractor, message)
        await self._delivery.deliver(self._config.user_id)
        async with self._sessionmaker() as session:
            waiting = await delivery.waiting(
                session=session, user_id=self._config.user_id, now=self._clock()
            )
        if not self._errors:
            status = RunStatus.SUCCESS
        elif self.items_processed:
            status = RunStatus.PARTIAL
        else:
            status = RunStatus.ERROR
        errors = capped_errors(self._errors)
        return RunOutcome(status, self.items_processed, self.items_created, errors, waiting)

    async def _fetch(self) -> list[MailMessage]:
        config = self._config
        date_range = config.filter_config.get("date_range") or {}
        start = date_range.get("start")
        end = date_range.get("end")
        since = window_start(
            last_success=config.last_success_at,
            date_range_start=date.fromisoformat(start) if start else None,
            now=self._clock(),
        )
        settings = self._settings
        async with self._sessionmaker() as session:
            tokens = await oauth.connection_tokens(
                session=session,
                cipher=self._cipher,
                oauth=oauth.provider_oauth(settings, config.provider),
                user_id=config.user_id,
                connection=config.connection_id,
            )
            async with httpx.AsyncClient(
                base_url=api_base(settings, config.provider), timeout=30.0
            ) as http:
                api = ProviderApi(
                    http=http,
                    tokens=tokens,
                    limits=FetchLimits(
                        max_messages=settings.cloud_max_messages_per_run,
                        attempts=settings.cloud_http_attempts,
                        max_retry_after_s=settings.cloud_max_retry_after_s,
                    ),
                    clock=self._clock,
                )
                return await fetch_messages(
                    provider=config.provider,
                    api=api,
                    filters=config.filter_config,
                    since=since,
                    before=date.fromisoformat(end) if end else None,
                    limit=settings.cloud_max_messages_per_run,
                )

    async def _process(self, extractor: Extractor, message: MailMessage) -> None:
        digest = self._cipher.digest(f"{self._config.provider.value}:{message.id}")
        async with self._sessionmaker() as session:
            if await service.processed_digests(
                session=session, agent_id=self._config.id, digests=[digest]
            ):
                return  # read by an earlier run: never extracted twice
        self.items_processed += 1
        request = ExtractionRequest(
            data_types=self._config.data_types,
            instructions=self._config.prompt_template,
            file_name=message.subject or "(no subject)",
            content=message_text(message),
            today=self._clock().astimezone(self._zone).date(),
            timezone=self._config.timezone,
            projects=(),
        )
        try:
            extraction = await extractor.extract(request)
        except (ExtractionFailedError, *MODEL_ERRORS) as exc:
            logger.warning("cloud extraction failed", extra={"error": type(exc).__name__})
            self._errors.append(f"“{request.file_name}”: the model could not extract from it")
            return  # not recorded: a later run tries this message again
        rows: list[tuple[Table, dict[str, object]]] = [
            (Table.PROJECTS, suggestion({"name": project.name[:200]}))
            for project in extraction.projects
        ]
        rows += [
            (table, suggestion(data))
            for table, data in suggestion_rows(
                extraction,
                Projects(),
                self._zone,
                source=f"“{request.file_name}”",
                errors=self._errors,
            )
        ]
        async with self._sessionmaker() as session:
            delivery.enqueue(
                session=session,
                cipher=self._cipher,
                user_id=self._config.user_id,
                run_id=self._run_id,
                items=rows,
                expires_at=self._clock() + self._delivery.ttl,
            )
            await service.remember_processed(
                session=session, agent_id=self._config.id, digests=[digest]
            )  # commits the queued items and the digest together
        self.items_created += len(rows)
