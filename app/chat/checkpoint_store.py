"""Conversation checkpoints that keep only what resuming a thread needs.

LangGraph saves a checkpoint at every step of a turn and never deletes one, so
a thread's storage grew with every turn (about 120 KB a turn) although the
history in it is bounded. Resuming needs only a thread's latest checkpoint,
with the blobs and pending writes it references. `LatestCheckpointSaver` drops
everything older each time it saves a thread's checkpoint, with LangGraph's own
`keep_latest` pruning (which keeps the blobs the latest checkpoint shares with
older ones), so a thread's storage stays flat however long it grows.
"""

from __future__ import annotations

import logging

import psycopg
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import ChannelVersions, Checkpoint, CheckpointMetadata
from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
from langgraph.types import Durability

logger = logging.getLogger(__name__)

TURN_DURABILITY: Durability = "exit"
"""How chat turns are checkpointed: once, as the turn ends (or fails).

LangGraph's default ("async") saves a checkpoint at every step of the turn,
and each would be written only to be pruned by the next.
"""

_ROOT_NAMESPACE = ""


class LatestCheckpointSaver(AsyncPostgresSaver):
    """`AsyncPostgresSaver` that prunes a thread to its latest checkpoint on every save."""

    async def aput(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        saved = await super().aput(config, checkpoint, metadata, new_versions)
        # Sub-agents are compiled without a checkpointer, so only the
        # supervisors' own (root) checkpoints arrive; pruning those also drops
        # any nested namespace they started.
        if saved["configurable"]["checkpoint_ns"] == _ROOT_NAMESPACE:
            await self._prune(str(saved["configurable"]["thread_id"]))
        return saved

    async def _prune(self, thread_id: str) -> None:
        try:
            await self.aprune([thread_id], strategy="keep_latest")
        except (psycopg.errors.SerializationFailure, psycopg.errors.DeadlockDetected) as exc:
            # Another server process wrote or pruned this thread at the same
            # moment. The checkpoint is saved; the thread's next save prunes it.
            logger.warning("checkpoint pruning skipped", extra={"error": type(exc).__name__})
