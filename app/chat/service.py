"""Running chat turns: a device request (streamed) or a REST call (one answer).

Around every turn the service binds what the tools need (the desktop, the
user's time zone, where `update_core_memory` writes) and picks the thread. A
turn that fails raises an `AppError`; the transport (`app.core.errors`) turns
it into an HTTP answer or an `error` frame.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import uuid
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from langchain_core.runnables import RunnableConfig
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from agents.llm import MODEL_ERRORS
from agents.middleware import FloatingScope
from agents.supervisors import Graph
from app.chat.checkpoint_store import TURN_DURABILITY
from app.chat.engine import ChatEngine
from app.chat.formatter import TurnStream
from app.chat.schemas import ChatResponse
from app.chat.tags import TagFilter
from app.core.errors import ModelFailedError, ModelNotConfiguredError
from app.core.keys import MasterKeyring
from app.core.settings import Settings
from app.device.calls import CallTarget
from app.device.connection import ChatTurn
from app.device.registry import DeviceRegistry
from app.memory.embeddings import embed
from app.memory.turns import TurnMemory
from app.observability import metrics
from app.usage.callbacks import UsageCallback
from app.usage.ledger import UsageLedger
from app.usage.recorder import UsageRecorder
from protocol.frames import FloatingRequest, HistoryMessage, HomeRequest
from tools.context import Embed, turn_context

logger = logging.getLogger(__name__)


def thread_key(user_id: uuid.UUID, device_id: str, request: HomeRequest | FloatingRequest) -> str:
    """The checkpointer thread; always under the user's id, so threads never cross users."""
    if request.thread_id:
        return f"{user_id}:thread:{request.thread_id}"
    if isinstance(request, FloatingRequest):
        return f"{user_id}:{device_id}:floating:{request.scope.type}:{request.scope.id or '-'}"
    return f"{user_id}:{device_id}:home"


@contextmanager
def _model_failures() -> Iterator[None]:
    """A model that failed (after its retries) is the model's failure, not a bug."""
    try:
        yield
    except MODEL_ERRORS as exc:
        logger.warning("model call failed", extra={"error": type(exc).__name__})
        raise ModelFailedError from exc


def _history(messages: list[HistoryMessage], limit: int) -> list[BaseMessage]:
    return [
        HumanMessage(m.content) if m.role == "user" else AIMessage(m.content)
        for m in messages[-limit:]
    ]


class ChatService:
    def __init__(
        self,
        *,
        settings: Settings,
        engine: ChatEngine,
        sessionmaker: async_sessionmaker[AsyncSession],
        keyring: MasterKeyring,
        registry: DeviceRegistry,
        usage: UsageRecorder,
    ) -> None:
        self._settings = settings
        self._usage = usage
        self._engine = engine
        self._sessionmaker = sessionmaker
        self._keyring = keyring
        self._registry = registry
        # One turn at a time per thread: two concurrent turns would interleave
        # their messages in one checkpoint. Weak values: idle threads cost nothing.
        self._thread_locks: weakref.WeakValueDictionary[str, asyncio.Lock] = (
            weakref.WeakValueDictionary()
        )

    def _lock(self, thread: str) -> asyncio.Lock:
        lock = self._thread_locks.get(thread)
        if lock is None:
            lock = self._thread_locks[thread] = asyncio.Lock()
        return lock

    @asynccontextmanager
    async def _turn_bindings(
        self, user_id: uuid.UUID, message: str, target: CallTarget
    ) -> AsyncIterator[TurnMemory]:
        """What the turn's prompt and tools need: the desktop, memory, time zone, embeddings."""
        memory = await TurnMemory.load(
            sessionmaker=self._sessionmaker,
            keyring=self._keyring,
            settings=self._settings,
            user_id=user_id,
            message=message,
        )
        with turn_context(
            timezone=memory.timezone,
            memory=memory.context,
            embed=self._note_embedder(),
            desktop=target.execute,
            returned_ids=target.returned_ids,
            remember=functools.partial(memory.set_core, self._sessionmaker),
        ):
            yield memory

    def _note_embedder(self) -> Embed | None:
        if not self._settings.embedding_model:
            return None
        return functools.partial(embed, self._settings)

    async def _thread_start(
        self, graph: Graph, config: RunnableConfig, history: list[HistoryMessage] | None
    ) -> tuple[list[BaseMessage], set[str]]:
        """Messages to seed a new thread with, and the ids known from earlier turns."""
        state = await graph.aget_state(config)
        values = state.values or {}
        seed = (
            []
            if values.get("messages") or not history
            else _history(history, self._settings.history_max_messages)
        )
        return seed, set(values.get("known_ids", []))

    def _graph(self, floating: bool) -> Graph:
        supervisors = self._engine.supervisors
        if supervisors is None:
            raise ModelNotConfiguredError(self._engine.not_configured)
        return supervisors.floating if floating else supervisors.home

    @contextmanager
    def _accounted(self, ledger: UsageLedger) -> Iterator[RunnableConfig]:
        """Attribute the turn's model calls to `ledger`, and store them however it ends.

        Yields the graph config's callbacks; calls made before a cancel or a
        failure are stored too.
        """
        with self._usage.attributed(ledger):
            yield {"callbacks": [UsageCallback(ledger, prices=self._settings.llm_prices)]}

    async def run_device_turn(self, turn: ChatTurn) -> None:
        """Stream one Home or Floating request; the connection sends `stream_end`."""
        request = turn.request
        graph = self._graph(floating=isinstance(request, FloatingRequest))
        thread = thread_key(turn.user_id, turn.device_id, request)
        with self._accounted(turn.usage) as accounting:
            async with self._lock(thread):
                await self._stream_turn(turn, graph, thread, accounting)

    async def _stream_turn(
        self, turn: ChatTurn, graph: Graph, thread: str, accounting: RunnableConfig
    ) -> None:
        request, target = turn.request, turn.target
        floating = isinstance(request, FloatingRequest)
        config: RunnableConfig = {**accounting, "configurable": {"thread_id": thread}}
        history = request.conversation_history if isinstance(request, HomeRequest) else None
        seed, known_ids = await self._thread_start(graph, config, history)
        target.returned_ids.update(known_ids)
        scope = (
            FloatingScope(request.scope.type, request.scope.id)
            if isinstance(request, FloatingRequest)
            else None
        )
        stream = TurnStream(
            emit=turn.emit,
            request_id=turn.request_id,
            floating=floating,
            known_ids=target.returned_ids,
        )
        async with self._turn_bindings(turn.user_id, request.message, target) as memory:
            await stream.start()
            with _model_failures():
                async for namespace, mode, data in graph.astream(
                    {"messages": [*seed, HumanMessage(request.message)]},
                    config,
                    context=scope,
                    stream_mode=["messages", "updates"],
                    subgraphs=True,
                    durability=TURN_DURABILITY,
                ):
                    await stream.event(tuple(namespace), mode, data)
            await stream.finish()
        answer = "".join(stream.answer)
        turn.after_end.append(
            functools.partial(
                memory.remember,
                self._sessionmaker,
                thread=thread,
                request=request.message,
                answer=answer,
            )
        )

    async def run_rest_turn(
        self, *, user_id: uuid.UUID, message: str, context: dict[str, Any] | None
    ) -> tuple[ChatResponse, Callable[[], Awaitable[None]]]:
        """One Home turn without streaming, its tools run on the user's latest desktop.

        Returns the answer and the memory write to run once it has been sent.
        """
        graph = self._graph(floating=False)
        thread = f"{user_id}:rest"
        ledger = UsageLedger(user_id=user_id, request_id=f"rest-{uuid.uuid4().hex}")
        with self._accounted(ledger) as accounting:
            async with self._lock(thread):
                answer, after = await self._answer(
                    graph, thread, ledger, message, context, accounting
                )
        # The whole answer arrives at once: its first text is its end.
        ledger.first_text()
        usage = ledger.summary()
        metrics.observe_turn("rest", usage)
        return answer.model_copy(update={"usage": usage}), after

    async def _answer(
        self,
        graph: Graph,
        thread: str,
        ledger: UsageLedger,
        message: str,
        context: dict[str, Any] | None,
        accounting: RunnableConfig,
    ) -> tuple[ChatResponse, Callable[[], Awaitable[None]]]:
        user_id = ledger.user_id
        config: RunnableConfig = {**accounting, "configurable": {"thread_id": thread}}
        _, known_ids = await self._thread_start(graph, config, None)
        target = CallTarget(
            link=self._registry.device(user_id),
            timeout_s=self._settings.tool_call_timeout_s,
            request_id=ledger.request_id,
            returned_ids=set(known_ids),
        )
        prompt = message
        if context:
            # Bounded by the request schema (MAX_CONTEXT_BYTES), so it goes in whole.
            prompt += "\n\nWhat the app is showing: " + json.dumps(context, ensure_ascii=False)
        async with self._turn_bindings(user_id, message, target) as memory:
            with _model_failures():
                state = await graph.ainvoke(
                    {"messages": [HumanMessage(prompt)]}, config, durability=TURN_DURABILITY
                )
        answer = state["messages"][-1].text if state.get("messages") else ""
        tags = TagFilter(target.returned_ids)
        response = tags.feed(answer) + tags.finish()
        after = functools.partial(
            memory.remember, self._sessionmaker, thread=thread, request=message, answer=response
        )
        return ChatResponse(response=response, mutations=target.mutations), after
