"""Every frame of the device WebSocket, in both directions (SPEC §4).

One JSON text message per frame, keyed on `type`. `ClientFrame` is what a
desktop may send, `ServerFrame` what the server sends; `ping` and `pong` go
both ways. `make schema` writes the JSON Schema of both unions, one 2020-12
document, to `docs/device-protocol.schema.json`; `make types` turns it into the
desktop app's TypeScript types (`docs/device-protocol.d.ts`).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, model_validator

# Ids hold no control character: a NUL cannot be stored by PostgreSQL, and ids are
# stored (threads, devices, request ids in usage rows) and logged.
Id = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[^\x00-\x1f\x7f]+$")]
MAX_MESSAGE_CHARS = 32_000


class _Frame(BaseModel):
    # Unknown fields are ignored so that newer clients can talk to older servers.
    model_config = ConfigDict(extra="ignore", frozen=True)

    def to_json(self) -> str:
        return self.model_dump_json(exclude_none=True)


# Client → server ------------------------------------------------------------


class DeviceHello(_Frame):
    type: Literal["device_hello"] = "device_hello"
    device_id: Id
    agent_ids: list[Id] = Field(default_factory=list, max_length=100)


class HistoryMessage(BaseModel):
    model_config = ConfigDict(frozen=True)

    role: Literal["user", "assistant"]
    content: str = Field(max_length=MAX_MESSAGE_CHARS)


class HomeRequest(_Frame):
    type: Literal["home_request"] = "home_request"
    request_id: Id | None = None
    message: str = Field(min_length=1, max_length=MAX_MESSAGE_CHARS)
    conversation_history: list[HistoryMessage] | None = Field(default=None, max_length=200)
    thread_id: Id | None = None


class ScopeType(StrEnum):
    TASK = "task"
    PROJECT = "project"
    NOTE = "note"
    TIMELINE = "timeline"


class Scope(BaseModel):
    model_config = ConfigDict(frozen=True)

    type: ScopeType
    id: Id | None = None


class FloatingRequest(_Frame):
    type: Literal["floating_request"] = "floating_request"
    request_id: Id | None = None
    message: str = Field(min_length=1, max_length=MAX_MESSAGE_CHARS)
    scope: Scope
    thread_id: Id | None = None


class VectorHit(BaseModel):
    id: str
    content: str
    score: float


RESULT_FIELDS = ("row", "rows", "results", "deleted", "ok", "error")


class ToolResult(_Frame):
    """The answer to one `tool_call`: exactly one of the result fields."""

    type: Literal["tool_result"] = "tool_result"
    id: Id
    row: dict[str, Any] | None = None
    rows: list[dict[str, Any]] | None = None
    results: list[VectorHit] | None = None
    deleted: bool | None = None
    ok: bool | None = None
    error: str | None = Field(default=None, max_length=4000)

    @model_validator(mode="after")
    def _exactly_one_result(self) -> ToolResult:
        given = [name for name in RESULT_FIELDS if name in self.model_fields_set]
        if len(given) != 1:
            msg = f"a tool_result carries exactly one of {', '.join(RESULT_FIELDS)}"
            raise ValueError(msg)
        return self

    def payload(self) -> dict[str, Any]:
        """The result as the tool sees it, e.g. `{"rows": [...]}`."""
        return self.model_dump(include=set(RESULT_FIELDS) & self.model_fields_set)


class DataType(StrEnum):
    """What a batch agent extracts; `timelines` are milestones."""

    TASKS = "tasks"
    NOTES = "notes"
    TIMELINES = "timelines"
    PROJECTS = "projects"


MAX_PATH_CHARS = 1024
MAX_RUN_ERRORS = 100
MAX_RUN_ERROR_CHARS = 1000


class AgentFile(BaseModel):
    """One file a desktop read for a batch run: where it is, its name and its text."""

    path: str = Field(max_length=MAX_PATH_CHARS)
    name: str = Field(max_length=255)
    content: str
    metadata: dict[str, Any] = Field(default_factory=dict)


class AgentData(_Frame):
    type: Literal["agent_data"] = "agent_data"
    run_id: Id
    files: list[AgentFile]


class AgentComplete(_Frame):
    type: Literal["agent_complete"] = "agent_complete"
    run_id: Id
    files_read: int = Field(ge=0)
    errors: list[Annotated[str, Field(max_length=MAX_RUN_ERROR_CHARS)]] = Field(
        default_factory=list, max_length=MAX_RUN_ERRORS
    )


class Cancel(_Frame):
    type: Literal["cancel"] = "cancel"
    request_id: Id


class Ping(_Frame):
    type: Literal["ping"] = "ping"
    timestamp: str | None = None


class Pong(_Frame):
    type: Literal["pong"] = "pong"
    timestamp: str | None = None


# Server → client ------------------------------------------------------------


class StreamStart(_Frame):
    type: Literal["stream_start"] = "stream_start"
    request_id: Id


class StreamText(_Frame):
    type: Literal["stream_text"] = "stream_text"
    request_id: Id
    chunk: str


class Table(StrEnum):
    """A table of the desktop's database (SPEC §3) that a tool call or mutation names."""

    TASKS = "tasks"
    PROJECTS = "projects"
    TIMELINES = "timelines"
    NOTES = "notes"
    TASK_COMMENTS = "taskComments"
    CLIENTS = "clients"


class Mutation(BaseModel):
    model_config = ConfigDict(frozen=True)

    action: Literal["insert", "update", "delete"]
    table: Table
    data: dict[str, Any]


class TurnUsage(BaseModel):
    """What one chat request used and how long it took (`stream_end.usage`, REST answers).

    Model calls, tokens as the providers reported them and their cost in US
    dollars, summed over every model call made for the request up to its end
    (the supervisor's, each sub-agent's, the embeddings'). `duration_ms` runs
    from the request's arrival to its end; `first_token_ms` to the first text
    of the answer sent (absent when the answer had no text).
    """

    model_config = ConfigDict(frozen=True)

    model_calls: int = Field(ge=0)
    prompt_tokens: int = Field(ge=0)
    completion_tokens: int = Field(ge=0)
    cost_usd: float = Field(ge=0)
    duration_ms: int = Field(ge=0)
    first_token_ms: int | None = Field(default=None, ge=0)


class StreamEnd(_Frame):
    type: Literal["stream_end"] = "stream_end"
    request_id: Id
    mutations: list[Mutation] = Field(default_factory=list)
    # Always sent by this server; optional so that frames of older servers still parse.
    usage: TurnUsage | None = None


class Domain(StrEnum):
    TASKS = "tasks"
    NOTES = "notes"
    PROJECTS = "projects"
    TIMELINES = "timelines"


class FloatingDomain(_Frame):
    type: Literal["floating_domain"] = "floating_domain"
    request_id: Id
    domain: Domain


class ToolAction(StrEnum):
    SELECT = "select"
    GET = "get"
    INSERT = "insert"
    UPDATE = "update"
    DELETE = "delete"
    VECTOR_UPSERT = "vector_upsert"
    VECTOR_SEARCH = "vector_search"


MUTATING_ACTIONS = frozenset({ToolAction.INSERT, ToolAction.UPDATE, ToolAction.DELETE})


class ToolCall(_Frame):
    type: Literal["tool_call"] = "tool_call"
    id: Id
    action: ToolAction
    table: Table | None = None
    data: dict[str, Any] | None = None
    filters: dict[str, Any] | None = None
    vector: list[float] | None = None
    limit: int | None = None
    request_id: Id | None = None
    run_id: Id | None = None


class AgentRunConfig(BaseModel):
    """What a local batch run reads: the folders, the file extensions, and what it looks for."""

    paths: list[str]
    file_extensions: list[str]
    prompt_template: str
    data_types: list[DataType]


class AgentRun(_Frame):
    type: Literal["agent_run"] = "agent_run"
    run_id: Id
    agent_id: Id
    config: AgentRunConfig


class ErrorCode(StrEnum):
    """Machine-readable `code` of an `error` frame (docs/protocol.md lists them)."""

    INVALID_JSON = "invalid_json"
    INVALID_FRAME = "invalid_frame"
    UNKNOWN_TYPE = "unknown_type"
    FRAME_TOO_LARGE = "frame_too_large"
    HELLO_REQUIRED = "hello_required"
    ALREADY_GREETED = "already_greeted"
    RATE_LIMITED = "rate_limited"
    TOO_MANY_REQUESTS = "too_many_requests"
    TOO_MANY_CONNECTIONS = "too_many_connections"
    DUPLICATE_REQUEST_ID = "duplicate_request_id"
    UNKNOWN_REQUEST = "unknown_request"
    UNKNOWN_RUN = "unknown_run"
    INTERNAL_ERROR = "internal_error"
    LLM_NOT_CONFIGURED = "llm_not_configured"
    LLM_ERROR = "llm_error"
    SERVICE_UNAVAILABLE = "service_unavailable"


class Error(_Frame):
    type: Literal["error"] = "error"
    code: ErrorCode
    message: str
    request_id: Id | None = None
    retry_after: float | None = Field(default=None, description="Seconds to wait before retrying")


ClientFrame = Annotated[
    DeviceHello
    | HomeRequest
    | FloatingRequest
    | ToolResult
    | AgentData
    | AgentComplete
    | Cancel
    | Ping
    | Pong,
    Field(discriminator="type"),
]

ServerFrame = Annotated[
    StreamStart
    | StreamText
    | StreamEnd
    | FloatingDomain
    | ToolCall
    | AgentRun
    | Error
    | Ping
    | Pong,
    Field(discriminator="type"),
]

client_frame_adapter: TypeAdapter[ClientFrame] = TypeAdapter(ClientFrame)
server_frame_adapter: TypeAdapter[ServerFrame] = TypeAdapter(ServerFrame)
