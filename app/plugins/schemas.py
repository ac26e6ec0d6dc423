"""The marketplace's bodies: the manifest an author submits, and what the routes answer."""

from __future__ import annotations

import re
import uuid
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, field_validator

from app.plugins.models import NAME_LENGTH, VERSION_LENGTH, Decision
from protocol.frames import Table

# Semantic Versioning 2.0.0 (semver.org's own regular expression).
SEMVER_PATTERN = (
    r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?"
    r"(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$"
)
SEMVER = re.compile(SEMVER_PATTERN)
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9 ._-]*$"
DESCRIPTION_MAX_CHARS = 4000
# Stripe charges at least 50 cents in USD; the ceiling keeps a typo from costing $10,000.
MIN_PRICE_CENTS = 50
MAX_PRICE_CENTS = 100_000
CURRENCY = "usd"
NOTES_MAX_CHARS = 4000
COMMENT_MAX_CHARS = 2000
MAX_PAGE_SIZE = 100


class Category(StrEnum):
    PRODUCTIVITY = "productivity"
    INTEGRATIONS = "integrations"
    WRITING = "writing"
    REPORTING = "reporting"
    AUTOMATION = "automation"
    UTILITIES = "utilities"


def _allowed_permissions() -> list[str]:
    """What a plugin may ask the desktop for: read or write each table of its database
    (SPEC §3), show notifications, reach the network."""
    tables = [f"{table.value}:{access}" for table in Table for access in ("read", "write")]
    return [*tables, "notifications", "network"]


ALLOWED_PERMISSIONS: frozenset[str] = frozenset(_allowed_permissions())
PERMISSION_MAX_CHARS = 64


class PluginManifest(BaseModel):
    """What an author says of a plugin version (the `manifest` field of a submission)."""

    model_config = ConfigDict(extra="forbid")

    name: StrictStr = Field(min_length=1, max_length=NAME_LENGTH, pattern=NAME_PATTERN)
    description: StrictStr = Field(min_length=1, max_length=DESCRIPTION_MAX_CHARS)
    version: StrictStr = Field(
        max_length=VERSION_LENGTH,
        pattern=SEMVER_PATTERN,
        description="Semantic Versioning 2.0.0, higher than the plugin's earlier versions.",
    )
    category: Category
    permissions: list[Annotated[StrictStr, Field(max_length=PERMISSION_MAX_CHARS)]] = Field(
        max_length=len(ALLOWED_PERMISSIONS),
        description="From the allowed set (README, Plugin marketplace; the checklist "
        "refuses others); none twice.",
    )
    price_cents: StrictInt = Field(
        ge=0,
        le=MAX_PRICE_CENTS,
        description=f"0 (free) or {MIN_PRICE_CENTS} to {MAX_PRICE_CENTS} US cents.",
    )

    @field_validator("price_cents")
    @classmethod
    def _chargeable(cls, value: int) -> int:
        if 0 < value < MIN_PRICE_CENTS:
            msg = f"a paid plugin costs at least {MIN_PRICE_CENTS} cents"
            raise ValueError(msg)
        return value


class Finding(BaseModel):
    check: str = Field(description="`manifest_schema`, `permissions`, `zip_entries`, …")
    passed: bool
    detail: str


class PluginRead(BaseModel):
    """A plugin as the catalog shows it: its manifest (of the approved version; an
    unapproved plugin, to its author or a reviewer, of its latest), counts and status."""

    id: uuid.UUID
    name: str
    description: str
    version: str
    category: str
    permissions: list[str]
    price_cents: int
    avg_rating: float | None = Field(description="Mean of the stars given, 2 decimals.")
    rating_count: int
    install_count: int
    status: Literal["pending_review", "approved", "rejected"] = Field(
        description="The shown version's review status."
    )
    author_id: uuid.UUID
    created_at: datetime


class CatalogPage(BaseModel):
    plugins: list[PluginRead]
    total: int
    page: int


class CatalogSort(StrEnum):
    RATING = "rating"
    INSTALLS = "installs"
    NEWEST = "newest"


class SubmissionRead(BaseModel):
    """A submitted version: accepted by the checklist, waiting for a reviewer."""

    id: uuid.UUID = Field(description="The plugin's id (the same for each of its versions).")
    version_id: uuid.UUID
    name: str
    version: str
    status: Literal["pending_review"]
    sha256: str
    size_bytes: int
    checklist: list[Finding]


class ReviewItem(BaseModel):
    id: uuid.UUID = Field(description="The plugin's id: what `POST /plugins/{id}/review` takes.")
    version_id: uuid.UUID
    author_id: uuid.UUID
    manifest: PluginManifest
    sha256: str
    size_bytes: int
    checklist: list[Finding]
    submitted_at: datetime


class ReviewCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    decision: Decision
    notes: str = Field(default="", max_length=NOTES_MAX_CHARS)


class ReviewRead(BaseModel):
    id: uuid.UUID
    plugin_id: uuid.UUID
    version_id: uuid.UUID
    version: str
    decision: Decision
    notes: str
    status: Literal["approved", "rejected"]
    created_at: datetime


class InstallRead(BaseModel):
    ok: bool = Field(description="True once installed; false while a payment is pending.")
    status: Literal["installed", "payment_required"]
    download_url: str | None = Field(
        description="Signed, valid for 15 minutes; null until a paid install is paid."
    )
    expires_at: datetime | None
    payment_intent_id: str | None = Field(
        default=None, description="A paid plugin's Stripe PaymentIntent, for the payment sheet."
    )
    client_secret: str | None = Field(
        default=None, description="The PaymentIntent's client secret, for Stripe.js / the sheet."
    )
    price_cents: int


class InstalledPlugin(BaseModel):
    plugin: PluginRead
    installed_at: datetime


class RatingCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    stars: int = Field(ge=1, le=5)
    comment: str | None = Field(default=None, max_length=COMMENT_MAX_CHARS)

    @field_validator("stars", mode="before")
    @classmethod
    def _a_json_number(cls, value: object) -> object:
        # JSON Schema's integer takes 3.0 (pydantic then checks it is whole), never "3" or true.
        if isinstance(value, bool) or not isinstance(value, int | float):
            msg = "stars is a whole number from 1 to 5"
            raise ValueError(msg)
        return value


class RatingRead(BaseModel):
    plugin_id: uuid.UUID
    stars: int
    comment: str | None
    avg_rating: float | None
    rating_count: int


class Ok(BaseModel):
    ok: Literal[True] = True


class MonthEarnings(BaseModel):
    month: str = Field(description="`YYYY-MM` (UTC).")
    sales: int
    gross_cents: int
    author_cents: int
    platform_cents: int
    transferred_cents: int = Field(description="Already transferred to the Connect account.")


class EarningsRead(BaseModel):
    currency: Literal["usd"] = "usd"
    months: list[MonthEarnings] = Field(description="Newest first.")
    total_author_cents: int
    payout_account: str | None = Field(description="The author's Stripe Connect account id.")


class PayoutOnboarding(BaseModel):
    onboarding_url: str = Field(description="Stripe's Connect onboarding: send the author there.")
    account_id: str
