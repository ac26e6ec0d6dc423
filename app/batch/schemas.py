"""What the batch-agent routes read and answer.

Every string and list is bounded; a schedule must parse and fire at most every
five minutes; a time zone must be an IANA name. The catalog publishes the JSON
Schema of each create model, so what the desktop shows is what is checked.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Annotated, Literal, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StringConstraints,
    WithJsonSchema,
    model_validator,
)

from app.batch.models import AgentType, JourneyKind, RunStatus, RunTrigger
from app.batch.schedule import (
    MAX_CRON_CHARS,
    MAX_TIMEZONE_CHARS,
    TIMEZONES,
    check_cron,
    check_timezone,
)
from protocol.frames import MAX_PATH_CHARS, DataType

MAX_NAME_CHARS = 100
MAX_PATHS = 20
MAX_EXTENSIONS = 20
MAX_PROMPT_TEMPLATE_CHARS = 4000
MAX_DEVICE_ID_CHARS = 128


_T = TypeVar("_T")


def _zone(value: str | None) -> str | None:
    return None if value is None else check_timezone(value)


def _distinct(values: list[_T]) -> list[_T]:
    """The values in order, each once: a repeated path or type is meant once."""
    return list(dict.fromkeys(values))


Name = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_NAME_CHARS)
]
Path = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_PATH_CHARS)
]
Extension = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True, to_lower=True, pattern=r"^\.[A-Za-z0-9][A-Za-z0-9_+-]{0,15}$"
    ),
    Field(description="A file extension with its dot, such as .md"),
]
Cron = Annotated[
    str,
    Field(
        min_length=1,
        max_length=MAX_CRON_CHARS,
        pattern=r"\S",
        description="A 5-field cron expression (or @hourly, @daily, …) evaluated in `timezone`;"
        " at most one run every 5 minutes.",
        examples=["0 9 * * 1"],
    ),
    AfterValidator(check_cron),
]
Timezone = Annotated[
    Annotated[
        str,
        Field(max_length=MAX_TIMEZONE_CHARS),
        WithJsonSchema({"type": "string", "enum": sorted(TIMEZONES)}),
    ]
    | None,
    Field(
        description="IANA time zone of the schedule; default: the user's (core memory), else UTC.",
        examples=["Europe/Berlin"],
    ),
    AfterValidator(_zone),
]
DataTypes = Annotated[
    list[DataType],
    Field(min_length=1, max_length=len(DataType), description="What to extract."),
    AfterValidator(_distinct),
]
Paths = Annotated[list[Path], Field(min_length=1, max_length=MAX_PATHS), AfterValidator(_distinct)]
Extensions = Annotated[
    list[Extension], Field(min_length=1, max_length=MAX_EXTENSIONS), AfterValidator(_distinct)
]
DeviceId = Annotated[str, Field(min_length=1, max_length=MAX_DEVICE_ID_CHARS)]
PromptTemplate = Annotated[
    str,
    Field(
        max_length=MAX_PROMPT_TEMPLATE_CHARS,
        description="What the user wants the agent to look for, in their words.",
    ),
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AgentSettings(_Strict):
    """What every agent type shares."""

    name: Name
    data_types: DataTypes = Field(default_factory=lambda: [DataType.TASKS, DataType.NOTES])
    prompt_template: PromptTemplate = ""
    schedule_cron: Cron
    timezone: Timezone = None
    enabled: StrictBool = True


class LocalAgentCreate(AgentSettings):
    """A local-directory agent: folders on one desktop, read through its device socket."""

    device_id: DeviceId
    directory_paths: Paths
    file_extensions: Extensions = Field(default_factory=lambda: [".md", ".txt"])


class LocalAgentUpdate(_Strict):
    """A change to a local agent: only the fields given change."""

    name: Name | None = None
    device_id: DeviceId | None = None
    directory_paths: Paths | None = None
    file_extensions: Extensions | None = None
    data_types: DataTypes | None = None
    prompt_template: PromptTemplate | None = None
    schedule_cron: Cron | None = None
    timezone: Timezone = None
    enabled: StrictBool | None = None


Filter = Annotated[list[Annotated[str, Field(min_length=1, max_length=200)]], Field(max_length=20)]
MAX_ENCRYPTED_TOKEN_CHARS = 1000


class DateRange(_Strict):
    """Which days a first run reads (default: the last 7); later runs read what is new."""

    start: date | None = None
    end: date | None = Field(default=None, description="Messages before this day only.")

    @model_validator(mode="after")
    def _ordered(self) -> DateRange:
        if self.start and self.end and self.end <= self.start:
            msg = "date_range.end must be after date_range.start"
            raise ValueError(msg)
        return self


class GmailFilter(_Strict):
    labels: Filter = Field(default_factory=list, description="Gmail label ids, e.g. INBOX.")
    senders: Filter = Field(default_factory=list)
    date_range: DateRange = Field(default_factory=DateRange)


class OutlookFilter(_Strict):
    folders: Filter = Field(
        default_factory=list, description="Mail folder ids or well-known names."
    )
    senders: Filter = Field(default_factory=list)
    date_range: DateRange = Field(default_factory=DateRange)


# A channel is named by its team and itself (Graph reads it at /teams/{team}/channels/{id}).
ChannelFilter = Annotated[
    list[Annotated[str, Field(min_length=3, max_length=200, pattern=r"^[^/]+/[^/]+$")]],
    Field(max_length=20),
]


class TeamsFilter(_Strict):
    chats: Filter = Field(default_factory=list, description="Chat ids; none: every chat.")
    channels: ChannelFilter = Field(
        default_factory=list, description="Channels as team-id/channel-id."
    )
    date_range: DateRange = Field(default_factory=DateRange)


CLOUD_FILTERS: dict[AgentType, type[GmailFilter | OutlookFilter | TeamsFilter]] = {
    AgentType.GMAIL: GmailFilter,
    AgentType.OUTLOOK: OutlookFilter,
    AgentType.TEAMS: TeamsFilter,
}
# A Fernet token: URL-safe base64 of at least 73 bytes (version, time, IV, a block, HMAC).
MIN_ENCRYPTED_TOKEN_CHARS = 100
EncryptedToken = Annotated[
    str,
    Field(
        min_length=MIN_ENCRYPTED_TOKEN_CHARS,
        max_length=MAX_ENCRYPTED_TOKEN_CHARS,
        pattern=r"^[A-Za-z0-9_-]+={0,2}$",
        description="The reference the OAuth callback answered (never the provider's token);"
        " one of another account, or for another provider, is refused with 400.",
    ),
]


class _CloudAgentCreate(AgentSettings):
    encrypted_token: EncryptedToken


class GmailAgentCreate(_CloudAgentCreate):
    """A Gmail agent: new mail in the connected account."""

    provider: Literal[AgentType.GMAIL]
    filter_config: GmailFilter = Field(default_factory=GmailFilter)


class OutlookAgentCreate(_CloudAgentCreate):
    """An Outlook agent: new mail in the connected Microsoft mailbox."""

    provider: Literal[AgentType.OUTLOOK]
    filter_config: OutlookFilter = Field(default_factory=OutlookFilter)


class TeamsAgentCreate(_CloudAgentCreate):
    """A Teams agent: new chat and channel messages of the connected Microsoft account."""

    provider: Literal[AgentType.TEAMS]
    filter_config: TeamsFilter = Field(default_factory=TeamsFilter)


CloudAgentCreate = Annotated[
    GmailAgentCreate | OutlookAgentCreate | TeamsAgentCreate, Field(discriminator="provider")
]


class CloudAgentUpdate(_Strict):
    """A change to a cloud agent: only the fields given change (the provider stays)."""

    name: Name | None = None
    encrypted_token: EncryptedToken | None = None
    # Each filter forbids the others' fields, so the union says which shape is which; the
    # agent's provider is only known from its id, and a filter of another provider is a 422.
    filter_config: GmailFilter | OutlookFilter | TeamsFilter | None = Field(
        default=None,
        description="The provider's filter, as on creation; one of another provider is a 422.",
    )
    data_types: DataTypes | None = None
    prompt_template: PromptTemplate | None = None
    schedule_cron: Cron | None = None
    timezone: Timezone = None
    enabled: StrictBool | None = None


class AgentRowRead(BaseModel):
    """What every agent's read shows from its row; the rest is its sealed settings."""

    id: uuid.UUID
    name: str
    data_types: list[DataType]
    prompt_template: str
    schedule_cron: str
    timezone: str
    enabled: bool
    last_run_at: datetime | None
    next_run_at: datetime | None
    created_at: datetime
    updated_at: datetime


class LocalAgentRead(AgentRowRead):
    type: Literal[AgentType.LOCAL_DIRECTORY] = AgentType.LOCAL_DIRECTORY
    device_id: str
    directory_paths: list[str]
    file_extensions: list[str]


class CloudAgentRead(AgentRowRead):
    provider: Literal[AgentType.GMAIL, AgentType.OUTLOOK, AgentType.TEAMS]
    filter_config: dict[str, object]


class CatalogEntry(BaseModel):
    type: AgentType
    name: str
    description: str
    config_schema: dict[str, object]


class RunRead(BaseModel):
    id: uuid.UUID
    agent_id: uuid.UUID
    trigger: RunTrigger
    status: RunStatus
    items_processed: int
    items_created: int
    items_waiting: int = Field(
        description="Cloud runs: the user's suggestions still waiting for a desktop at the end."
    )
    errors: list[str]
    started_at: datetime
    completed_at: datetime | None


class RunPage(BaseModel):
    items: list[RunRead]
    page: int
    limit: int
    total: int


class RunStarted(BaseModel):
    ok: Literal[True] = True
    run_id: uuid.UUID


# -- the setup journey -------------------------------------------------------------------

MAX_JOURNEY_MESSAGE_CHARS = 2000


class JourneyStart(_Strict):
    agent_type: JourneyKind
    agent_id: uuid.UUID | None = Field(
        default=None, description="One of the user's agents, to refine its prompt template."
    )


class JourneyMessage(_Strict):
    session_id: uuid.UUID
    message: Annotated[
        str,
        StringConstraints(
            strip_whitespace=True, min_length=1, max_length=MAX_JOURNEY_MESSAGE_CHARS
        ),
    ]


class JourneyReply(BaseModel):
    session_id: uuid.UUID
    message: str
    done: bool
    prompt_template: str | None = Field(
        default=None, description="When done: the instruction for the extraction model."
    )
