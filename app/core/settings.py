"""Runtime configuration, read once from the environment (and `.env`).

Every field maps to the upper-case environment variable of the same name; the
README's configuration table documents them.
"""

from __future__ import annotations

import os
import re
from enum import StrEnum
from functools import cached_property
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from app.core.database_urls import sqlalchemy_url


class Environment(StrEnum):
    DEV = "dev"
    PROD = "prod"


GIB = 1024**3

DEFAULT_CORS_ORIGINS = ["app://*", "http://localhost:*", "http://127.0.0.1:*"]


class ModelPrice(BaseModel):
    """What one model costs, in US dollars per million tokens (LLM_PRICES)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    input: float = Field(ge=0)
    output: float = Field(default=0.0, ge=0)


def _split_commas(value: object) -> object:
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


class Settings(BaseSettings):
    """The server's settings as configured; required secrets may still be missing.

    `app.core.secrets.resolve_secrets` fills them in (or refuses) and returns
    `ResolvedSettings`. Secrets are `SecretStr`: `repr` and logs show stars.
    """

    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    # May carry a password, so it stays out of `repr(settings)` like the secrets.
    database_url: str | None = Field(default=None, repr=False)
    data_dir: Path = Path("var")
    env: Environment = Environment.DEV
    jwt_secret: SecretStr | None = None
    encryption_key: SecretStr | None = None
    # Retired master keys, newest first: still able to unwrap data keys until
    # `python -m app rotate-master-key` has re-wrapped them with ENCRYPTION_KEY.
    encryption_old_keys: Annotated[list[SecretStr], NoDecode] = Field(default_factory=list)
    access_token_ttl_s: int = Field(default=900, ge=30)
    refresh_token_ttl_s: int = Field(default=30 * 24 * 3600, ge=60)
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: list(DEFAULT_CORS_ORIGINS)
    )
    log_level: str = "INFO"
    # bcrypt work factor; 12 is the production default, tests lower it for speed.
    bcrypt_rounds: int = Field(default=12, ge=4, le=16)
    # Password checks (bcrypt) running at once, and waiting for their turn at most;
    # a login or registration past both is refused with 503 "busy" (README, Load shedding).
    bcrypt_workers: int = Field(default_factory=lambda: os.cpu_count() or 1, ge=1)
    bcrypt_max_waiting: int = Field(default=32, ge=0)

    # The connection pool to PostgreSQL. A request that waits DB_POOL_TIMEOUT_S for a
    # connection (or DB_CONNECT_TIMEOUT_S to open one) answers 503 with Retry-After.
    db_pool_size: int = Field(default=10, ge=1)
    db_max_overflow: int = Field(default=20, ge=0)
    db_pool_timeout_s: float = Field(default=5.0, gt=0)
    db_connect_timeout_s: float = Field(default=5.0, gt=0)

    # The language model, reached through LiteLLM (model strings like "openai/gpt-4o-mini").
    llm_model: str | None = None
    llm_api_base: str | None = None
    llm_api_key: SecretStr | None = None
    # Tried in order when the main model fails after its retries.
    llm_fallback_models: Annotated[list[str], NoDecode] = Field(default_factory=list)
    llm_supervisor_model: str | None = None
    llm_subagent_model: str | None = None
    llm_timeout_s: float = Field(default=60.0, gt=0)
    llm_max_retries: int = Field(default=2, ge=0)
    # Messages of a thread the supervisor keeps (and sends) at most; older ones are dropped.
    history_max_messages: int = Field(default=40, ge=4)
    default_timezone: str = "UTC"

    # Prices that replace LiteLLM's bundled cost map, per model string, in USD per
    # million tokens: '{"openai/my-model": {"input": 0.15, "output": 0.6}}'. Models in
    # neither (local ones such as ollama_chat/...) cost 0.
    llm_prices: dict[str, ModelPrice] = Field(default_factory=dict)

    # Embeddings (LiteLLM) for associative memory and note indexing; off when unset.
    embedding_model: str | None = None
    embedding_api_base: str | None = None
    embedding_api_key: SecretStr | None = None
    embedding_dim: int = Field(default=1536, ge=8, le=16000)
    embedding_timeout_s: float = Field(default=30.0, gt=0)

    # What memory adds to each turn's prompt (docs in README, "Memory").
    memory_budget_chars: int = Field(default=4000, ge=200)
    memory_top_k: int = Field(default=5, ge=0)
    memory_recent_episodes: int = Field(default=5, ge=0)
    memory_pattern_threshold: float = Field(default=0.6, ge=0, le=1)
    memory_pattern_interval_s: float = Field(default=3600.0, gt=0)

    # The device WebSocket (docs/protocol.md).
    tool_call_timeout_s: float = Field(default=30.0, gt=0)
    ws_ping_interval_s: float = Field(default=30.0, gt=0)
    ws_idle_timeout_s: float = Field(default=90.0, gt=0)
    ws_max_frame_bytes: int = Field(default=1024 * 1024, ge=1024)
    ws_messages_per_minute: int = Field(default=100, ge=1)
    # Frames that could not be used (invalid, over the rate limit, forged tool
    # results) a connection may send per minute before it is closed (4001).
    ws_invalid_frames_per_minute: int = Field(default=20, ge=1)
    ws_max_connections_per_user: int = Field(default=5, ge=1)
    ws_max_connections: int = Field(default=10_000, ge=1)
    ws_max_inflight_requests: int = Field(default=4, ge=1)

    # Batch agents (README, Batch agents). The scheduler wakes every interval; a run no
    # instance has refreshed for BATCH_STALE_RUN_S is ended as interrupted.
    batch_scheduler_interval_s: float = Field(default=30.0, gt=0)
    batch_stale_run_s: float = Field(default=300.0, gt=0)
    batch_idle_timeout_s: float = Field(default=120.0, gt=0)
    batch_max_files_per_run: int = Field(default=500, ge=1)
    batch_max_file_bytes: int = Field(default=256 * 1024, ge=1)
    batch_max_run_bytes: int = Field(default=16 * 1024 * 1024, ge=1)
    # Characters of a file sent to the model in one extraction call; longer files go in pieces.
    batch_chunk_chars: int = Field(default=12_000, ge=500)

    # Cloud connectors (README, Cloud agents). Redirect URIs are
    # {OAUTH_REDIRECT_BASE}/api/v1/oauth/{provider}/callback; the URL settings default to the
    # providers' real endpoints. OAUTH_DESKTOP_REDIRECT (a deep link) makes the callback hand
    # control back to the desktop app instead of answering JSON.
    oauth_redirect_base: str | None = None
    oauth_desktop_redirect: str | None = None
    google_client_id: str | None = None
    google_client_secret: SecretStr | None = None
    google_auth_url: str = "https://accounts.google.com/o/oauth2/v2/auth"
    google_token_url: str = "https://oauth2.googleapis.com/token"  # noqa: S105 - a URL
    gmail_api_base: str = "https://gmail.googleapis.com"
    microsoft_client_id: str | None = None
    microsoft_client_secret: SecretStr | None = None
    microsoft_tenant: str = "common"
    # Default: https://login.microsoftonline.com/{MICROSOFT_TENANT}/oauth2/v2.0/authorize
    # (and …/token).
    microsoft_auth_url: str | None = None
    microsoft_token_url: str | None = None
    ms_graph_api_base: str = "https://graph.microsoft.com"
    # Messages one cloud run reads at most; attempts per provider request on 429/5xx, and
    # the longest Retry-After honoured (a longer one ends the fetch as an error).
    cloud_max_messages_per_run: int = Field(default=200, ge=1)
    cloud_http_attempts: int = Field(default=4, ge=1, le=10)
    cloud_max_retry_after_s: float = Field(default=60.0, ge=0)
    # Extracted items wait this long for a desktop to connect, then expire.
    cloud_delivery_ttl_s: float = Field(default=14 * 24 * 3600.0, gt=0)
    # A setup journey's session answers this long after it started, then 410.
    journey_ttl_s: float = Field(default=3600.0, gt=0)

    # REST request bodies: the limit of routes without one of their own (app.core.body_limit).
    http_max_body_bytes: int = Field(default=64 * 1024, ge=1024)

    # Observability (README, "Usage, metrics and traces"). GET /metrics asks for this
    # bearer token when it is set; traces are exported over OTLP/HTTP only when the
    # endpoint is set (e.g. http://collector:4318).
    metrics_token: SecretStr | None = None
    otel_exporter_otlp_endpoint: str | None = None
    otel_service_name: str = "adiuva-server"

    # Requests per minute (app.tiers): per user by tier (team: per seat), per client address
    # for unauthenticated routes, and failed logins per email before a LOGIN_LOCK_S lock.
    rate_limit_free: int = Field(default=20, ge=1)
    rate_limit_pro: int = Field(default=60, ge=1)
    rate_limit_power: int = Field(default=120, ge=1)
    rate_limit_team: int = Field(default=200, ge=1)
    rate_limit_anonymous: int = Field(default=60, ge=1)
    login_max_failures: int = Field(default=5, ge=1)
    login_lock_s: int = Field(default=60, ge=1)
    # Where the limiter keeps its counts: in this process, or shared by every instance
    # (`redis://…`, with `limits[async-redis]` installed); README, Rate limits.
    rate_limit_storage_uri: str = "memory://"

    # Billing with Stripe (app.billing); unset: the billing routes answer 503 naming them.
    stripe_secret_key: SecretStr | None = None
    stripe_webhook_secret: SecretStr | None = None
    stripe_price_pro: str | None = None
    stripe_price_power: str | None = None
    stripe_price_team: str | None = None
    billing_success_url: str | None = None
    billing_cancel_url: str | None = None
    # Where Stripe's customer portal sends the user back to; unset: BILLING_SUCCESS_URL.
    billing_portal_return_url: str | None = None
    stripe_api_base: str = "https://api.stripe.com"
    # Stripe Connect for plugin authors' payouts (app.plugins.revenue): where Stripe's
    # onboarding sends an author back when done, and when its link has expired.
    stripe_connect_return_url: str | None = None
    stripe_connect_refresh_url: str | None = None
    # How often authors' shares not yet transferred are sent to their Connect accounts.
    plugin_payout_interval_s: float = Field(default=3600.0, gt=0)

    # End-to-end encrypted cloud storage (app.storage; README, Cloud storage). Blobs live
    # under DATA_DIR/blobs unless S3_BUCKET is set; then in that bucket of S3 or any
    # S3-compatible store at S3_ENDPOINT_URL. Credentials left unset come from the usual
    # AWS_* environment variables (or the instance's role).
    s3_bucket: str | None = None
    s3_endpoint_url: str | None = None
    s3_region: str = "us-east-1"
    s3_access_key_id: str | None = None
    s3_secret_access_key: SecretStr | None = None
    # A backup body larger than this is refused with 413 before it is read.
    backup_max_bytes: int = Field(default=GIB, ge=1)
    # Backups kept per user; an upload past it removes the oldest.
    backup_keep: int = Field(default=10, ge=1)
    # Blobs without a metadata row (a crash between writing one and committing its row)
    # are removed once older than STORAGE_ORPHAN_AGE_S, by a sweep every
    # STORAGE_SWEEP_INTERVAL_S.
    storage_orphan_age_s: float = Field(default=3600.0, gt=0)
    storage_sweep_interval_s: float = Field(default=3600.0, gt=0)

    _split = field_validator(
        "encryption_old_keys", "cors_origins", "llm_fallback_models", mode="before"
    )(_split_commas)

    @field_validator(
        "stripe_secret_key",
        "stripe_webhook_secret",
        "stripe_price_pro",
        "stripe_price_power",
        "stripe_price_team",
        "billing_success_url",
        "billing_cancel_url",
        "billing_portal_return_url",
        "stripe_connect_return_url",
        "stripe_connect_refresh_url",
        "s3_bucket",
        "s3_endpoint_url",
        "s3_access_key_id",
        "s3_secret_access_key",
        mode="before",
    )
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        # `STRIPE_SECRET_KEY=` in a .env file means "not configured", not an empty key.
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("database_url")
    @classmethod
    def _use_asyncpg_driver(cls, value: str | None) -> str | None:
        """Accept the usual `postgres://` spellings and run them on asyncpg."""
        if not value:
            return None
        try:
            return sqlalchemy_url(value)
        except ValueError:
            msg = "DATABASE_URL must be a PostgreSQL URL (postgresql://… or postgresql+asyncpg://…)"
            raise ValueError(msg) from None

    @field_validator("log_level")
    @classmethod
    def _known_log_level(cls, value: str) -> str:
        level = value.upper()
        if level not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
            msg = "LOG_LEVEL must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL"
            raise ValueError(msg)
        return level

    @model_validator(mode="after")
    def _s3_needs_a_bucket(self) -> Settings:
        """S3 settings without S3_BUCKET would be ignored (blobs on the disk): refuse."""
        unused = [
            name
            for name, value in (
                ("S3_ENDPOINT_URL", self.s3_endpoint_url),
                ("S3_ACCESS_KEY_ID", self.s3_access_key_id),
                ("S3_SECRET_ACCESS_KEY", self.s3_secret_access_key),
            )
            if value is not None
        ]
        if self.s3_bucket is None and unused:
            msg = f"{', '.join(unused)} set without S3_BUCKET: set the bucket, or unset them"
            raise ValueError(msg)
        return self

    @model_validator(mode="after")
    def _stale_runs_outlive_passes(self) -> Settings:
        # Each pass refreshes the runs of its instance: a live run must never look stale.
        if self.batch_stale_run_s < 2 * self.batch_scheduler_interval_s:
            msg = "BATCH_STALE_RUN_S must be at least twice BATCH_SCHEDULER_INTERVAL_S"
            raise ValueError(msg)
        return self

    @property
    def ws_hard_limit_bytes(self) -> int:
        """Frames past this are cut off by the WebSocket library itself (close 1009).

        Between WS_MAX_FRAME_BYTES and this, the protocol answers with an
        `error` frame and the connection stays open.
        """
        return self.ws_max_frame_bytes * 4

    @cached_property
    def cors_origin_regex(self) -> str:
        """CORS_ORIGINS as one anchored regex; `*` matches any run of characters."""
        patterns = [".*".join(re.escape(part) for part in o.split("*")) for o in self.cors_origins]
        return "^(?:" + "|".join(patterns) + ")$" if patterns else "^$"


class ResolvedSettings(Settings):
    """Settings after `app.core.secrets.resolve_secrets`: the JWT secret and the master key are set.

    What the running server holds (`SettingsDep`); code that needs a required
    secret asks for this type, so it never has to check for a missing one.
    """

    model_config = SettingsConfigDict(frozen=True)

    jwt_secret: SecretStr
    encryption_key: SecretStr


def secret_value(secret: SecretStr | None) -> str | None:
    """The plain text of an optional secret (an API key), for the one call that sends it."""
    return None if secret is None else secret.get_secret_value()
