"""One run of a local agent: ask the desktop for its files, extract, insert suggestions.

The server sends `agent_run`; the desktop answers with `agent_data` frames and
one `agent_complete`. Files are checked against the run's limits the moment
they arrive (so what is kept in memory is bounded), then each new piece of
text (keyed by its digest, per agent) goes to the model once, and every item
found becomes an `insert` tool call on the desktop, flagged as an AI
suggestion awaiting approval. The run ends at once when the desktop
disconnects, and with an error when it stays silent for the idle time-out.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.language_models import BaseChatModel
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from agents.extraction import (
    ExtractedMilestone,
    ExtractedNote,
    ExtractedTask,
    Extraction,
    ExtractionFailedError,
    ExtractionRequest,
    Extractor,
    Project,
)
from agents.llm import MODEL_ERRORS
from app.batch import service
from app.batch.models import RunStatus
from app.device.calls import CallTarget
from app.device.link import DeviceLink, RunFrame
from app.memory.cipher import UserCipher
from protocol.errors import DeviceDisconnectedError, DeviceOfflineError, ToolCallError
from protocol.frames import (
    MAX_RUN_ERRORS,
    AgentComplete,
    AgentFile,
    AgentRun,
    AgentRunConfig,
    Table,
    ToolAction,
)

logger = logging.getLogger(__name__)

DEVICE_DISCONNECTED = "device disconnected"
MAX_TITLE_CHARS = 200
MAX_DESCRIPTION_CHARS = 4000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)
_SUGGESTION = {"isAiSuggested": 1, "isApproved": 0}


@dataclass(frozen=True, slots=True)
class RunLimits:
    """What one run may read (README, Batch agents); the settings fill it in."""

    max_files: int
    max_file_bytes: int
    max_total_bytes: int
    idle_timeout_s: float
    chunk_chars: int


@dataclass(slots=True)
class RunOutcome:
    """How a run ended, as its log row records it."""

    status: RunStatus
    items_processed: int
    items_created: int
    errors: list[str]
    items_waiting: int = 0


def capped_errors(errors: list[str]) -> list[str]:
    """A run's error entries, at most MAX_RUN_ERRORS of them and a line counting the rest."""
    if len(errors) <= MAX_RUN_ERRORS:
        return errors
    return [*errors[:MAX_RUN_ERRORS], f"… and {len(errors) - MAX_RUN_ERRORS} more errors"]


class RunEndedError(Exception):
    """The run cannot go on (silent desktop, …); the message is its last error."""


def split_text(text: str, size: int) -> list[str]:
    """`text` in pieces of at most `size` characters, cut at a line break when one is near."""
    pieces: list[str] = []
    while len(text) > size:
        window = text[:size]
        cut = max(window.rfind("\n\n"), window.rfind("\n"))
        if cut < size // 2:
            cut = size
        pieces.append(text[:cut])
        text = text[cut:].lstrip("\n")
    if text.strip():
        pieces.append(text)
    return pieces


class RunInbox:
    """The run's frames in arrival order, each file checked against the limits on arrival.

    Files past a limit, or without one of the agent's extensions, are dropped
    at once and named in `errors`; only accepted files are queued.
    """

    def __init__(self, limits: RunLimits, extensions: list[str]) -> None:
        self._limits = limits
        self._extensions = tuple(extension.lower() for extension in extensions)
        self._queue: asyncio.Queue[AgentFile | AgentComplete] = asyncio.Queue()
        self.files_received = 0
        self.bytes_accepted = 0
        self.errors: list[str] = []

    def receive(self, frame: RunFrame) -> None:
        if isinstance(frame, AgentComplete):
            self._queue.put_nowait(frame)
            return
        for file in frame.files:
            self.files_received += 1
            refusal = self._refusal(file)
            if refusal is None:
                self.bytes_accepted += len(file.content.encode())
                self._queue.put_nowait(file)
            else:
                self.errors.append(f"{file.path}: {refusal}; skipped")

    def _refusal(self, file: AgentFile) -> str | None:
        limits = self._limits
        if self.files_received > limits.max_files:
            return f"over the limit of {limits.max_files} files per run"
        if not file.name.lower().endswith(self._extensions):
            return "not one of the agent's file extensions"
        size = len(file.content.encode())
        if size > limits.max_file_bytes:
            return f"{size} bytes, over the limit of {limits.max_file_bytes} bytes per file"
        if self.bytes_accepted + size > limits.max_total_bytes:
            return f"over the limit of {limits.max_total_bytes} bytes per run"
        return None

    async def next(self) -> AgentFile | AgentComplete:
        """The next accepted file or the `agent_complete`; `RunEndedError` after the idle time."""
        try:
            async with asyncio.timeout(self._limits.idle_timeout_s):
                return await self._queue.get()
        except TimeoutError:
            msg = (
                f"the desktop sent no agent_data or agent_complete for"
                f" {self._limits.idle_timeout_s:g} seconds"
            )
            raise RunEndedError(msg) from None


@dataclass(slots=True)
class Projects:
    """The user's projects (one `select` per run) and those the run created."""

    known: list[Project] = field(default_factory=list)

    def add(self, row: dict[str, Any]) -> None:
        if isinstance(row.get("id"), str) and isinstance(row.get("name"), str):
            self.known.append(Project(id=row["id"], name=row["name"]))

    def resolve(self, reference: str | None) -> str | None:
        """A project id from what the model gave: an id, else an exact name (any case)."""
        if not reference:
            return None
        wanted = reference.strip()
        for project in self.known:
            if project.id == wanted:
                return project.id
        for project in self.known:
            if project.name.casefold() == wanted.casefold():
                return project.id
        return None


def _day_millis(value: str | None, zone: ZoneInfo) -> int | None:
    """Unix ms of the start of an ISO date (its first 10 characters) in `zone`; None if unusable."""
    if not value:
        return None
    try:
        day = date.fromisoformat(value.strip()[:10])
    except ValueError:
        return None
    return (datetime.combine(day, time(), zone) - _EPOCH) // _MS


def _clip(text: str | None, limit: int) -> str | None:
    return None if text is None else text.strip()[:limit]


def _task(task: ExtractedTask, projects: Projects, zone: ZoneInfo) -> dict[str, Any]:
    return {
        "title": _clip(task.title, MAX_TITLE_CHARS),
        "description": _clip(task.description, MAX_DESCRIPTION_CHARS) or None,
        "status": "todo",
        "priority": task.priority,
        "dueDate": _day_millis(task.due_date, zone),
        "projectId": projects.resolve(task.project),
    }


def _milestone(
    milestone: ExtractedMilestone,
    projects: Projects,
    zone: ZoneInfo,
    source: str,
    errors: list[str],
) -> dict[str, Any] | None:
    title = _clip(milestone.title, MAX_TITLE_CHARS)
    project_id = projects.resolve(milestone.project)
    if project_id is None:
        errors.append(f"{source}: milestone “{title}” skipped: its project could not be determined")
        return None
    moment = _day_millis(milestone.date, zone)
    if moment is None:
        errors.append(f"{source}: milestone “{title}” skipped: it has no usable date")
        return None
    return {"title": title, "date": moment, "projectId": project_id}


def _note(note: ExtractedNote, projects: Projects) -> dict[str, Any]:
    return {
        "title": _clip(note.title, MAX_TITLE_CHARS),
        "content": note.content,
        "projectId": projects.resolve(note.project),
    }


def suggestion_rows(
    extraction: Extraction, projects: Projects, zone: ZoneInfo, *, source: str, errors: list[str]
) -> list[tuple[Table, dict[str, Any]]]:
    """The tasks, milestones and notes of an extraction as rows for the desktop (projects are
    inserted first by the caller, so items can name them). Unusable milestones are skipped and
    reported in `errors` under `source`."""
    rows: list[tuple[Table, dict[str, Any]]] = [
        (Table.TASKS, _task(task, projects, zone)) for task in extraction.tasks
    ]
    for milestone in extraction.milestones:
        data = _milestone(milestone, projects, zone, source, errors)
        if data is not None:
            rows.append((Table.TIMELINES, data))
    rows.extend((Table.NOTES, _note(note, projects)) for note in extraction.notes)
    return rows


def suggestion(data: dict[str, Any]) -> dict[str, Any]:
    """The fields of an insert of one unapproved AI suggestion (unset fields left out)."""
    return {**{key: value for key, value in data.items() if value is not None}, **_SUGGESTION}


class LocalRun:
    """One claimed run of a local agent on its connected desktop."""

    def __init__(
        self,
        *,
        run_id: uuid.UUID,
        config: service.LocalAgentConfig,
        link: DeviceLink,
        model: BaseChatModel,
        sessionmaker: async_sessionmaker[AsyncSession],
        cipher: UserCipher,
        limits: RunLimits,
        tool_call_timeout_s: float,
        clock: Callable[[], datetime],
        callbacks: Sequence[BaseCallbackHandler] = (),
    ) -> None:
        self._run_id = str(run_id)
        self._config = config
        self._link = link
        # `callbacks` see every extraction call (the run's usage accounting).
        self._extractor = Extractor(model, config.data_types, callbacks=callbacks)
        self._sessionmaker = sessionmaker
        self._cipher = cipher
        self._limits = limits
        self._clock = clock
        self._zone = ZoneInfo(config.timezone)
        self._target = CallTarget(link=link, timeout_s=tool_call_timeout_s, run_id=self._run_id)
        self._inbox = RunInbox(limits, config.file_extensions)
        self._projects: Projects | None = None
        self._errors: list[str] = []
        self.items_processed = 0
        self.items_created = 0

    async def execute(self) -> RunOutcome:
        """Run to the end; the desktop going away ends it at once, whatever it was doing."""
        work = asyncio.create_task(self._work())
        gone = asyncio.create_task(self._link.disconnected.wait())
        try:
            await asyncio.wait({work, gone}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            gone.cancel()
            if not work.done():
                work.cancel()
            await asyncio.gather(work, gone, return_exceptions=True)
            self._link.close_run(self._run_id)
        if work.cancelled() or isinstance(work.exception(), DeviceDisconnectedError):
            return self._ended_early(DEVICE_DISCONNECTED)
        if isinstance(work.exception(), RunEndedError):
            return self._ended_early(str(work.exception()))
        work.result()  # anything else is a bug: raised for the caller to log
        return self._outcome()

    async def _work(self) -> None:
        self._link.open_run(self._run_id, self._inbox.receive)
        config = self._config
        await self._link.send(
            AgentRun(
                run_id=self._run_id,
                agent_id=str(config.id),
                config=AgentRunConfig(
                    paths=config.directory_paths,
                    file_extensions=config.file_extensions,
                    prompt_template=config.prompt_template,
                    data_types=sorted(config.data_types),
                ),
            )
        )
        while True:
            received = await self._inbox.next()
            if isinstance(received, AgentComplete):
                self._errors.extend(received.errors)
                return
            await self._process(received)

    def _ended_early(self, reason: str) -> RunOutcome:
        outcome = self._outcome()
        outcome.errors.append(reason)
        outcome.status = RunStatus.ERROR
        return outcome

    def _outcome(self) -> RunOutcome:
        errors = capped_errors([*self._inbox.errors, *self._errors])
        if not errors:
            status = RunStatus.SUCCESS
        elif self.items_processed or self.items_created:
            status = RunStatus.PARTIAL
        else:
            status = RunStatus.ERROR
        return RunOutcome(status, self.items_processed, self.items_created, errors)

    # -- one file --------------------------------------------------------------

    async def _process(self, file: AgentFile) -> None:
        chunks = split_text(file.content, self._limits.chunk_chars)
        digests = [self._cipher.digest(chunk) for chunk in chunks]
        async with self._sessionmaker() as session:
            done = await service.processed_digests(
                session=session, agent_id=self._config.id, digests=digests
            )
        self.items_processed += 1
        for part, (chunk, digest) in enumerate(zip(chunks, digests, strict=True), start=1):
            if digest in done:
                continue  # extracted by an earlier run: nothing is inserted twice
            extraction = await self._extract(file, chunk, part, len(chunks))
            if extraction is None:
                continue  # not recorded: a later run tries this piece again
            await self._insert(file, extraction)
            async with self._sessionmaker() as session:
                await service.remember_processed(
                    session=session, agent_id=self._config.id, digests=[digest]
                )
            done.add(digest)

    async def _extract(
        self, file: AgentFile, chunk: str, part: int, parts: int
    ) -> Extraction | None:
        request = ExtractionRequest(
            data_types=self._config.data_types,
            instructions=self._config.prompt_template,
            file_name=file.name,
            content=chunk,
            today=self._clock().astimezone(self._zone).date(),
            timezone=self._config.timezone,
            projects=tuple((await self._user_projects()).known),
            part=part,
            parts=parts,
        )
        try:
            return await self._extractor.extract(request)
        except (ExtractionFailedError, *MODEL_ERRORS) as exc:
            logger.warning("batch extraction failed", extra={"error": type(exc).__name__})
            where = f" (part {part} of {parts})" if parts > 1 else ""
            self._errors.append(f"{file.path}{where}: the model could not extract from it")
            return None

    async def _user_projects(self) -> Projects:
        """The user's projects, read once per run (the first time a file needs the model)."""
        if self._projects is None:
            self._projects = Projects()
            try:
                result = await self._target.execute(
                    ToolAction.SELECT, Table.PROJECTS, filters={"includeArchived": False}
                )
            except ToolCallError as exc:
                self._raise_if_gone(exc)
                self._errors.append(f"the desktop's projects could not be read: {exc}")
            else:
                for row in result.get("rows") or []:
                    self._projects.add(row)
        return self._projects

    # -- inserting suggestions -------------------------------------------------------

    async def _insert(self, file: AgentFile, extraction: Extraction) -> None:
        projects = await self._user_projects()
        for project in extraction.projects:
            row = await self._suggest(file, Table.PROJECTS, {"name": _clip(project.name, 200)})
            if row is not None:
                projects.add(row)
        for table, data in suggestion_rows(
            extraction, projects, self._zone, source=file.path, errors=self._errors
        ):
            await self._suggest(file, table, data)

    async def _suggest(
        self, file: AgentFile, table: Table, data: dict[str, Any]
    ) -> dict[str, Any] | None:
        """Insert one item as an unapproved AI suggestion; a refusal is an error entry."""
        try:
            result = await self._target.execute(ToolAction.INSERT, table, data=suggestion(data))
        except ToolCallError as exc:
            self._raise_if_gone(exc)
            self._errors.append(f"{file.path}: a {table.value} item was not inserted: {exc}")
            return None
        self.items_created += 1
        row = result.get("row")
        return row if isinstance(row, dict) else None

    @staticmethod
    def _raise_if_gone(exc: ToolCallError) -> None:
        if isinstance(exc, DeviceDisconnectedError | DeviceOfflineError):
            raise DeviceDisconnectedError from exc
