"""What chat needs at start-up: the models, the checkpointer and the two graphs.

Built once in the app's lifespan. With no model configured the server still
runs: `supervisors` is None and `not_configured` says which variable to set.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from agents.llm import LLMNotConfiguredError, ModelConfig, chat_model
from agents.supervisors import Supervisors, build_supervisors
from app.chat.checkpoint_cipher import encrypted_serializer
from app.chat.checkpoint_store import LatestCheckpointSaver
from app.core.database_urls import libpq_url
from app.core.keys import MasterKeyring
from app.core.settings import Settings

logger = logging.getLogger(__name__)


def model_config(settings: Settings) -> ModelConfig:
    """The agents' model configuration, from the server's settings."""
    return ModelConfig(
        model=settings.llm_model,
        api_base=settings.llm_api_base,
        api_key=settings.llm_api_key.get_secret_value() if settings.llm_api_key else None,
        fallback_models=tuple(settings.llm_fallback_models),
        supervisor_model=settings.llm_supervisor_model,
        subagent_model=settings.llm_subagent_model,
        timeout_s=settings.llm_timeout_s,
        max_retries=settings.llm_max_retries,
    )


@dataclass
class ChatEngine:
    supervisors: Supervisors | None
    not_configured: str | None = None
    _pool: AsyncConnectionPool[Any] | None = None

    @classmethod
    async def start(
        cls, settings: Settings, keyring: MasterKeyring, database_url: str
    ) -> ChatEngine:
        config = model_config(settings)
        try:
            supervisor_model = chat_model(config, "supervisor")
            subagent_model = chat_model(config, "subagent")
        except LLMNotConfiguredError as exc:
            logger.warning("chat is off: %s", exc)
            return cls(supervisors=None, not_configured=str(exc))
        pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
            libpq_url(database_url),
            open=False,
            max_size=10,
            # Fail a turn within seconds when the database is away; drop dead connections first.
            timeout=settings.db_pool_timeout_s,
            check=AsyncConnectionPool.check_connection,
            # What AsyncPostgresSaver requires of its connections.
            kwargs={"autocommit": True, "prepare_threshold": 0, "row_factory": dict_row},
        )
        await pool.open()
        checkpointer = LatestCheckpointSaver(pool, serde=encrypted_serializer(keyring.all_keys))
        await checkpointer.setup()
        supervisors = build_supervisors(
            supervisor_model=supervisor_model,
            subagent_model=subagent_model,
            checkpointer=checkpointer,
            max_messages=settings.history_max_messages,
        )
        return cls(supervisors=supervisors, _pool=pool)

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
