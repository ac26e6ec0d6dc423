"""The I/O side of one device connection: a thin adapter over `DeviceProtocol`.

It moves frames between the WebSocket and the protocol core, runs each chat
request as its own task, keeps the heartbeat, and on disconnect fails every
pending tool call and cancels every running request at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from app.auth.service import SESSION_ENDED
from app.core.errors import error_frame
from app.core.logging import request_id_var
from app.device.calls import CallTarget
from app.device.link import DeviceLink
from app.device.protocol import CloseCode, DeviceProtocol, Heartbeat, now_iso
from app.device.registry import DeviceRegistry
from app.observability import metrics
from app.observability.tracing import tracer
from app.usage.ledger import UsageLedger
from protocol.errors import DeviceDisconnectedError, ToolCallCancelledError
from protocol.frames import (
    AgentComplete,
    AgentData,
    Cancel,
    ClientFrame,
    DeviceHello,
    FloatingRequest,
    HomeRequest,
    Ping,
    ServerFrame,
    StreamEnd,
    StreamText,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ChatTurn:
    """One chat request, as handed to the chat handler.

    Work appended to `after_end` runs in the background once `stream_end` has
    been sent, so it never delays the answer (memory writes, for one). `usage`
    is the request's ledger: its model calls and timing go into `stream_end`.
    """

    user_id: uuid.UUID
    device_id: str
    request: HomeRequest | FloatingRequest
    emit: Callable[[ServerFrame], Awaitable[None]]
    target: CallTarget  # the desktop the turn's tool calls go to
    usage: UsageLedger
    after_end: list[Callable[[], Awaitable[None]]] = field(default_factory=list)

    @property
    def request_id(self) -> str:
        assert self.request.request_id is not None  # the protocol fills it in
        return self.request.request_id


ChatHandler = Callable[[ChatTurn], Awaitable[None]]
HelloHandler = Callable[[DeviceLink], Awaitable[None]]
"""Runs in the background once a device has said hello (batch agents catch up)."""


@dataclass(slots=True)
class _RunningRequest:
    """A chat request's task, and whether a `cancel` came for it.

    A task cancelled before its first step never enters its coroutine, so its
    `finally` (which frees the slot and sends `stream_end`) would never run. A
    cancel that arrives before the task has started is therefore only
    recorded; the task sees it when it starts and ends at once.
    """

    task: asyncio.Task[None]
    started: bool = False
    cancelled: bool = False

    def cancel(self) -> None:
        if self.cancelled:
            return
        self.cancelled = True
        if self.started:
            self.task.cancel()


class DeviceConnection:
    def __init__(
        self,
        websocket: WebSocket,
        *,
        user_id: uuid.UUID,
        protocol: DeviceProtocol,
        registry: DeviceRegistry,
        chat_handler: ChatHandler,
        tool_call_timeout_s: float,
        still_signed_in: Callable[[], Awaitable[bool]],
        hello_handler: HelloHandler | None = None,
        admit_request: Callable[[], Awaitable[None]],
    ) -> None:
        self._websocket = websocket
        self._user_id = user_id
        self._protocol = protocol
        self._registry = registry
        self._chat_handler = chat_handler
        self._hello_handler = hello_handler
        self._tool_call_timeout_s = tool_call_timeout_s
        self._still_signed_in = still_signed_in
        self._admit_request = admit_request
        self._send_lock = asyncio.Lock()
        self._requests: dict[str, _RunningRequest] = {}
        self._background: set[asyncio.Task[None]] = set()
        self._link: DeviceLink | None = None
        self._closed = False

    async def run(self) -> None:
        heartbeat = asyncio.create_task(self._heartbeat())
        metrics.DEVICE_CONNECTIONS.inc()
        try:
            await self._receive_loop()
        except (WebSocketDisconnect, DeviceDisconnectedError):
            pass  # the device went away; cleaning up below is all there is to do
        finally:
            self._closed = True
            heartbeat.cancel()
            if self._link is not None:
                self._link.fail_all(DeviceDisconnectedError())
            requests = [running.task for running in self._requests.values()]
            for task in requests:
                task.cancel()
            await asyncio.gather(heartbeat, *requests, return_exceptions=True)
            if self._link is not None:
                self._registry.unbind(self._link)
            metrics.DEVICE_CONNECTIONS.dec()
            self._log_noise()

    async def send(self, frame: ServerFrame) -> None:
        if self._closed:
            raise DeviceDisconnectedError
        texts = self._protocol.encode(frame)
        try:
            async with self._send_lock:
                for text in texts:
                    await self._websocket.send_text(text)
        except (WebSocketDisconnect, RuntimeError, OSError) as exc:
            self._closed = True
            raise DeviceDisconnectedError from exc
        metrics.count_sent_frame(frame)

    async def close(self, code: int, reason: str) -> None:
        if self._websocket.application_state is WebSocketState.CONNECTED:
            await self._websocket.close(code, reason)

    async def _receive_loop(self) -> None:
        while True:
            message = await self._websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            if message.get("text") is not None:
                received = self._protocol.receive_text(message["text"])
            else:
                received = self._protocol.receive_bytes()
            metrics.FRAMES_RECEIVED.labels(received.frame_type).inc()
            if self._link is not None:
                self._link.touch()
            for reply in received.replies:
                await self.send(reply)
            if received.result is not None and self._link is not None:
                self._link.deliver(received.result)
            if received.close is not None:
                logger.warning("closing a device connection: %s", received.close.reason)
                await self.close(received.close.code, received.close.reason)
                return
            if received.frame is not None:
                await self._act(received.frame)

    async def _act(self, frame: ClientFrame) -> None:
        if isinstance(frame, DeviceHello):
            await self._greet(frame)
        elif isinstance(frame, HomeRequest | FloatingRequest):
            assert frame.request_id is not None
            task = asyncio.create_task(self._run_request(frame))
            self._requests[frame.request_id] = _RunningRequest(task)
        elif isinstance(frame, Cancel):
            running = self._requests.get(frame.request_id)
            if running is not None:
                running.cancel()
        elif isinstance(frame, AgentData | AgentComplete) and self._link is not None:
            self._link.deliver_run(frame)

    async def _greet(self, hello: DeviceHello) -> None:
        self._link = DeviceLink(
            user_id=self._user_id,
            device_id=hello.device_id,
            protocol=self._protocol,
            send=self.send,
            close=self.close,
        )
        replaced = self._registry.bind(self._link)
        if replaced is not None:
            logger.info("device reconnected; closing its older connection")
            await replaced.close(CloseCode.REPLACED, "replaced by a newer connection")
        if self._hello_handler is not None:
            # In the background: what it starts needs this receive loop running.
            self._in_background(functools.partial(self._hello_handler, self._link))

    async def _run_request(self, request: HomeRequest | FloatingRequest) -> None:
        assert request.request_id is not None
        assert self._link is not None
        request_id = request.request_id
        # Log lines written for this request carry its id, not the connection's.
        request_id_var.set(request_id)
        kind = "floating" if isinstance(request, FloatingRequest) else "home"
        usage = UsageLedger(user_id=self._user_id, request_id=request_id)
        target = CallTarget(
            link=self._link, timeout_s=self._tool_call_timeout_s, request_id=request_id
        )

        async def emit(frame: ServerFrame) -> None:
            if isinstance(frame, StreamText):
                usage.first_text()
            await self.send(frame)

        turn = ChatTurn(
            user_id=self._user_id,
            device_id=self._link.device_id,
            request=request,
            emit=emit,
            target=target,
            usage=usage,
        )
        running = self._requests[request_id]
        running.started = True
        admitted = False
        try:
            if not running.cancelled:
                with tracer().start_as_current_span(
                    "device chat request",
                    attributes={"adiuva.request_id": request_id, "adiuva.turn.kind": kind},
                    record_exception=False,  # an exception's text may quote the user
                ):
                    # The user's request rate limit: past it, `rate_limited` then
                    # stream_end (its usage all zero), and no turn in the metrics.
                    await self._admit_request()
                    admitted = True
                    await self._chat_handler(turn)
        except asyncio.CancelledError:
            if self._closed:
                raise
            # Cancelled by the client: the request still ends with its stream_end.
            current = asyncio.current_task()
            while current is not None and current.cancelling():
                current.uncancel()
        except DeviceDisconnectedError:
            return
        except Exception as exc:
            await self._send_quietly(error_frame(exc, request_id))
        finally:
            self._link.fail_request(request_id, ToolCallCancelledError())
            self._protocol.request_finished(request_id)
            self._requests.pop(request_id, None)
        summary = usage.summary()
        await self._send_quietly(
            StreamEnd(request_id=request_id, mutations=target.mutations, usage=summary)
        )
        if admitted:
            metrics.observe_turn(kind, summary)
        for work in turn.after_end:
            self._in_background(work)

    def _in_background(self, work: Callable[[], Awaitable[None]]) -> None:
        task = asyncio.create_task(self._logged(work))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    @staticmethod
    async def _logged(work: Callable[[], Awaitable[None]]) -> None:
        try:
            await work()
        except Exception:
            logger.exception("background work of a device connection failed")

    def _log_noise(self) -> None:
        """One line for all the useless frames of this connection (the first was logged)."""
        repeated = {kind.name.lower(): n for kind, n in self._protocol.noise.items() if n > 1}
        if repeated:
            logger.warning("device connection sent useless frames", extra={"counts": repeated})

    async def _login_still_active(self) -> bool:
        try:
            return await self._still_signed_in()
        except Exception:  # the database is down: that is no reason to drop the device
            logger.warning("could not re-check the login of a device connection")
            return True

    async def _send_quietly(self, frame: ServerFrame) -> None:
        """Send if the device is still there; a request ending after a disconnect is normal."""
        with contextlib.suppress(DeviceDisconnectedError):
            await self.send(frame)

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(self._protocol.seconds_to_next_heartbeat())
            action = self._protocol.heartbeat()
            if action is Heartbeat.SEND_PING:
                # The token was checked at connect; a login revoked since
                # (logout, stolen refresh token) ends the connection here.
                if not await self._login_still_active():
                    await self.close(CloseCode.POLICY_VIOLATION, SESSION_ENDED)
                    return
                await self._send_quietly(Ping(timestamp=now_iso()))
            elif action is Heartbeat.CLOSE:
                logger.info("device silent past the idle timeout; closing")
                await self.close(CloseCode.GOING_AWAY, "heartbeat timeout")
                return
