"""Device WebSocket client of the reference desktop client (SPEC §4, docs/protocol.md).

`DeviceClient` talks to the server the way the Electron app does: it connects
with an access token, says ``device_hello``, answers every ``tool_call`` from a
`LocalStore`, every ``ping`` with a ``pong`` and every ``agent_run`` with the
files of the folders it shares (`devclient.agent_files`), and runs Home and
Floating chat requests. Tests, benchmarks and the command line (`devclient.cli`) drive the
server through it.

It exchanges plain JSON dicts, exactly what goes over the wire, and imports
nothing from ``app``: it is written from the protocol alone, so it checks the
server against the protocol rather than against the server's own models.

How incoming frames are delivered: every frame except a ``ping`` the client
answers itself goes to exactly one place. A frame whose ``request_id`` names a
request this client started and that has not ended goes to that request
(`stream`, `result`); anything else goes to the general inbox (`next_frame`).
A request ends with its ``stream_end``, or with an ``error`` that is its first
frame and has a refusal code (`REFUSAL_CODES`: the server refused it, so no
``stream_end`` follows). Tool calls are
also recorded in `DeviceClient.tool_calls` and answered in the background, and
so are batch runs (`DeviceClient.agent_runs`).
Server frames that are not JSON objects with a string ``type`` are recorded in
`DeviceClient.protocol_errors` instead.
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Final, Literal, Self
from urllib.parse import urlencode, urlsplit, urlunsplit

import httpx
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed

from devclient.agent_files import RunFiles, SharedFolders, run_frames
from devclient.store import LocalStore

Frame = dict[str, Any]
"""One JSON frame as it goes over the wire."""

ToolCallHook = Callable[[Frame], Awaitable[Frame | None]]
"""Answers a ``tool_call``: the ``tool_result`` payload to send, or None to send nothing."""

AgentRunHook = Callable[[Frame], Awaitable[None]]
"""Takes over an ``agent_run``: it sends whatever it likes (tests script misbehaving desktops)."""

NO_SHARED_FOLDERS: Final = "this desktop shares no folders with batch agents"

ScopeType = Literal["task", "project", "note", "timeline"]

DEVICE_PATH: Final = "/api/v1/ws/device"
AUTH_PATH: Final = "/api/v1/auth"
REQUEST_TIMEOUT_S: Final = 120.0
FRAME_TIMEOUT_S: Final = 10.0
HTTP_TIMEOUT_S: Final = 30.0

_WS_SCHEMES: Final = {"http": "ws", "https": "wss", "ws": "ws", "wss": "wss"}
_EXCERPT_CHARS: Final = 200

_log = logging.getLogger(__name__)


class DeviceClosedError(Exception):
    """The device WebSocket is closed; `code` and `reason` come from the server's close frame."""

    def __init__(self, code: int | None, reason: str | None) -> None:
        detail = f"{code}: {reason}" if reason else f"{code}"
        super().__init__(f"connection closed (code {detail})")
        self.code = code
        self.reason = reason


class AuthError(Exception):
    """The server refused a register or login call (`status_code` is the HTTP status)."""

    def __init__(self, action: str, status_code: int, detail: str) -> None:
        super().__init__(f"{action} failed: HTTP {status_code}: {detail}")
        self.action = action
        self.status_code = status_code
        self.detail = detail


@dataclass(frozen=True)
class ChatResult:
    """Every frame of one chat request in arrival order, ending with the request's last frame."""

    request_id: str
    frames: list[Frame]

    @property
    def types(self) -> list[str]:
        """The frame types in order, for asserting the frame sequence."""
        return [frame["type"] for frame in self.frames]

    @property
    def text(self) -> str:
        """The answer: every ``stream_text`` chunk joined."""
        return "".join(frame["chunk"] for frame in self._of_type("stream_text"))

    @property
    def mutations(self) -> list[Frame]:
        """The ``stream_end`` mutations; empty for a refused request."""
        last = self.frames[-1]
        return list(last.get("mutations", [])) if last["type"] == "stream_end" else []

    @property
    def errors(self) -> list[Frame]:
        """The request's ``error`` frames."""
        return self._of_type("error")

    @property
    def tool_calls(self) -> list[Frame]:
        """The ``tool_call`` frames the request caused."""
        return self._of_type("tool_call")

    @property
    def domain(self) -> str | None:
        """The ``floating_domain`` of a Floating request, None for Home requests."""
        domains = self._of_type("floating_domain")
        return str(domains[0]["domain"]) if domains else None

    @property
    def refused(self) -> bool:
        """Whether the server refused the request (an ``error`` and no ``stream_end``)."""
        return self.types[-1] == "error"

    def _of_type(self, frame_type: str) -> list[Frame]:
        return [frame for frame in self.frames if frame["type"] == frame_type]


class _Inbox:
    """Frames not yet read, in arrival order, for one reader that waits for them.

    `finish` marks the end: the reader gets the remaining frames, then None.
    `complete` tells whether the frames ended normally or the connection closed.
    """

    def __init__(self) -> None:
        self._frames: collections.deque[Frame] = collections.deque()
        self._wakeup = asyncio.Event()
        self.received = 0
        self.finished = False
        self.complete = False

    def put(self, frame: Frame) -> None:
        """Queue `frame` and wake the reader."""
        self._frames.append(frame)
        self.received += 1
        self._wakeup.set()

    def finish(self, *, complete: bool) -> None:
        """Take no more frames; the reader drains the rest, then gets None."""
        self.finished = True
        self.complete = complete
        self._wakeup.set()

    async def get(self) -> Frame | None:
        """The next frame; None once the inbox is finished and empty."""
        while not self._frames:
            if self.finished:
                return None
            self._wakeup.clear()
            await self._wakeup.wait()
        return self._frames.popleft()


REFUSAL_CODES: Final = frozenset(
    {
        "invalid_frame",
        "frame_too_large",
        "hello_required",
        "too_many_requests",
        "duplicate_request_id",
    }
)
"""Error codes that refuse a request before it starts: no ``stream_end`` follows."""


def _is_last_frame(frame: Frame, *, first: bool) -> bool:
    """Whether `frame` ends its request: ``stream_end``, or an ``error`` that refused it."""
    frame_type: str = frame["type"]
    refused = first and frame_type == "error" and frame.get("code") in REFUSAL_CODES
    return frame_type == "stream_end" or refused


def _decode(raw: str | bytes) -> Frame:
    """Parse one server message; raise ValueError saying why it is not a frame."""
    if isinstance(raw, bytes):
        msg = f"binary message of {len(raw)} bytes"
        raise ValueError(msg)
    try:
        frame = json.loads(raw)
    except json.JSONDecodeError as error:
        msg = f"invalid JSON ({error}): {raw[:_EXCERPT_CHARS]!r}"
        raise ValueError(msg) from error
    if not isinstance(frame, dict) or not isinstance(frame.get("type"), str):
        msg = f"not a JSON object with a string type: {raw[:_EXCERPT_CHARS]!r}"
        raise ValueError(msg)
    return frame


class DeviceClient:
    """One desktop connected to the device WebSocket; see the module docstring.

    Open it with `connect`. `auto_answer_tools`, `on_tool_call` and `auto_pong`
    may be changed at any time: with `on_tool_call` set, it decides every
    answer (it may wait, answer anything, or return None to send nothing);
    otherwise tool calls are answered from the store when `auto_answer_tools`
    is true. With `auto_pong` false, server pings go to the general inbox
    unanswered, as a silent client would leave them. Batch runs are answered
    from `shared_folders` (none: an ``agent_complete`` saying so), unless
    `on_agent_run` takes them over.
    """

    def __init__(
        self,
        websocket: ClientConnection,
        store: LocalStore,
        *,
        device_id: str,
        on_tool_call: ToolCallHook | None = None,
        auto_answer_tools: bool = True,
        auto_pong: bool = True,
        shared_folders: SharedFolders | None = None,
        on_agent_run: AgentRunHook | None = None,
    ) -> None:
        """Wrap an open WebSocket and start reading it (use `connect` to open one)."""
        self.device_id = device_id
        self.on_tool_call = on_tool_call
        self.auto_answer_tools = auto_answer_tools
        self.auto_pong = auto_pong
        self.shared_folders = shared_folders
        self.on_agent_run = on_agent_run
        self.tool_calls: list[Frame] = []
        self.agent_runs: list[Frame] = []
        self.protocol_errors: list[str] = []
        self._ws = websocket
        self._store = store
        self._general = _Inbox()
        self._requests: dict[str, _Inbox] = {}
        self._answers: set[asyncio.Task[None]] = set()
        self._reader = asyncio.create_task(self._read_frames())

    @classmethod
    async def connect(
        cls,
        *,
        server: str,
        token: str,
        device_id: str,
        store: LocalStore,
        send_hello: bool = True,
        agent_ids: Sequence[str] = (),
        on_tool_call: ToolCallHook | None = None,
        auto_answer_tools: bool = True,
        auto_pong: bool = True,
        shared_folders: SharedFolders | None = None,
        on_agent_run: AgentRunHook | None = None,
        open_timeout_s: float = FRAME_TIMEOUT_S,
    ) -> Self:
        """Open the device WebSocket of `server` (its http(s) base URL) and say hello.

        Raises what `websockets` raises when the connection cannot be opened.
        A server that accepts and closes at once (a rejected token) is not an
        error here: the hello is then not sent, and `wait_closed` gives the code.
        """
        # Like the Electron app (a browser WebSocket), send no protocol-level
        # pings and accept messages of any size; the protocol has its own heartbeat.
        websocket = await ws_connect(
            device_url(server, token),
            open_timeout=open_timeout_s,
            ping_interval=None,
            max_size=None,
        )
        client = cls(
            websocket,
            store,
            device_id=device_id,
            on_tool_call=on_tool_call,
            auto_answer_tools=auto_answer_tools,
            auto_pong=auto_pong,
            shared_folders=shared_folders,
            on_agent_run=on_agent_run,
        )
        if send_hello:
            try:
                await client.hello(agent_ids)
            except DeviceClosedError:
                _log.debug("the server closed the connection before the hello")
        return client

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    @property
    def store(self) -> LocalStore:
        """The desktop database this client answers tool calls from."""
        return self._store

    @property
    def closed(self) -> bool:
        """Whether the connection has ended (and every frame before the end was delivered)."""
        return self._reader.done()

    @property
    def close_code(self) -> int | None:
        """The close code the server sent (1006 if none), or None while open."""
        return self._ws.close_code

    @property
    def close_reason(self) -> str | None:
        """The close reason the server sent, or None while open."""
        return self._ws.close_reason

    async def close(self) -> None:
        """Close the connection normally and stop answering tool calls; idempotent."""
        await self._ws.close()
        await self._reader
        for task in list(self._answers):
            task.cancel()
        await asyncio.gather(*self._answers, return_exceptions=True)

    async def wait_closed(
        self, timeout_s: float | None = FRAME_TIMEOUT_S
    ) -> tuple[int | None, str | None]:
        """Wait until the connection ends; return the server's close code and reason."""
        async with asyncio.timeout(timeout_s):
            await asyncio.shield(self._reader)
        return self.close_code, self.close_reason

    # --- sending ---------------------------------------------------------------

    async def send_text(self, raw: str) -> None:
        """Send one raw text message, valid frame or not (for malformed-frame tests)."""
        try:
            await self._ws.send(raw)
        except ConnectionClosed as error:
            rcvd = error.rcvd
            raise DeviceClosedError(
                rcvd.code if rcvd else None, rcvd.reason if rcvd else None
            ) from error

    async def send_json(self, frame: Frame) -> None:
        """Send one frame as JSON."""
        await self.send_text(json.dumps(frame, ensure_ascii=False))

    async def hello(self, agent_ids: Sequence[str] = ()) -> None:
        """Send ``device_hello`` (`connect` does unless told not to)."""
        await self.send_json(
            {"type": "device_hello", "device_id": self.device_id, "agent_ids": list(agent_ids)}
        )

    async def cancel(self, request_id: str) -> None:
        """Ask the server to stop a running request; it still ends with ``stream_end``."""
        await self.send_json({"type": "cancel", "request_id": request_id})

    # --- chat requests ---------------------------------------------------------

    async def start_request(self, request: Frame) -> str:
        """Send a ``home_request`` or ``floating_request`` and collect its frames.

        A request without ``request_id`` gets a fresh one; returns the id, for
        `stream`, `result` and `cancel`. Raises ValueError if a request with that
        id is still being collected.
        """
        request_id = str(request.get("request_id") or uuid.uuid4().hex)
        if request_id in self._requests:
            msg = f"request {request_id!r} is already running on this client"
            raise ValueError(msg)
        self._requests[request_id] = _Inbox()
        try:
            await self.send_json({**request, "request_id": request_id})
        except DeviceClosedError:
            del self._requests[request_id]
            raise
        return request_id

    async def stream(self, request_id: str) -> AsyncIterator[Frame]:
        """Yield a started request's frames as they arrive, up to and including its last.

        Raises DeviceClosedError if the connection ends first.
        """
        inbox = self._requests[request_id]
        while (frame := await inbox.get()) is not None:
            yield frame
        del self._requests[request_id]
        if not inbox.complete:
            raise self._closed_error()

    async def result(
        self, request_id: str, *, timeout_s: float | None = REQUEST_TIMEOUT_S
    ) -> ChatResult:
        """Wait for a started request to end and return all its frames.

        Raises TimeoutError after `timeout_s` seconds, DeviceClosedError if
        the connection ends first.
        """
        async with asyncio.timeout(timeout_s):
            frames = [frame async for frame in self.stream(request_id)]
        return ChatResult(request_id, frames)

    async def chat(
        self,
        message: str,
        *,
        request_id: str | None = None,
        thread_id: str | None = None,
        conversation_history: list[dict[str, str]] | None = None,
        timeout_s: float | None = REQUEST_TIMEOUT_S,
    ) -> ChatResult:
        """Ask the Home assistant and wait for the whole answer."""
        request = home_request(
            message,
            request_id=request_id,
            thread_id=thread_id,
            conversation_history=conversation_history,
        )
        return await self.result(await self.start_request(request), timeout_s=timeout_s)

    async def floating(
        self,
        message: str,
        scope_type: ScopeType,
        scope_id: str | None = None,
        *,
        request_id: str | None = None,
        thread_id: str | None = None,
        timeout_s: float | None = REQUEST_TIMEOUT_S,
    ) -> ChatResult:
        """Ask the Floating assistant about one entity and wait for the whole answer."""
        request = floating_request(
            message, scope_type, scope_id, request_id=request_id, thread_id=thread_id
        )
        return await self.result(await self.start_request(request), timeout_s=timeout_s)

    async def next_frame(self, timeout_s: float | None = FRAME_TIMEOUT_S) -> Frame:
        """The next frame of the general inbox (frames of no running request).

        Raises TimeoutError after `timeout_s` seconds, DeviceClosedError once
        the connection has ended and every frame was read.
        """
        async with asyncio.timeout(timeout_s):
            frame = await self._general.get()
        if frame is None:
            raise self._closed_error()
        return frame

    # --- receiving -------------------------------------------------------------

    async def _read_frames(self) -> None:
        """Handle every incoming message until the connection ends, then wake all readers."""
        try:
            async for raw in self._ws:
                await self._handle(raw)
        except ConnectionClosed:
            _log.debug("connection closed with code %s", self._ws.close_code)
        finally:
            self._general.finish(complete=False)
            for inbox in self._requests.values():
                if not inbox.finished:
                    inbox.finish(complete=False)

    async def _handle(self, raw: str | bytes) -> None:
        """Answer, record and deliver one incoming message."""
        try:
            frame = _decode(raw)
        except ValueError as error:
            self.protocol_errors.append(str(error))
            return
        if frame["type"] == "ping" and self.auto_pong:
            await self._send_if_open({"type": "pong"})
            return
        if frame["type"] == "tool_call":
            self._take_tool_call(frame)
        elif frame["type"] == "agent_run":
            self._take_agent_run(frame)
        self._deliver(frame)

    def _deliver(self, frame: Frame) -> None:
        """Put `frame` in its running request's inbox, or in the general one."""
        request_id = frame.get("request_id")
        inbox = self._requests.get(request_id) if isinstance(request_id, str) else None
        if inbox is None or inbox.finished:
            self._general.put(frame)
            return
        last = _is_last_frame(frame, first=inbox.received == 0)
        inbox.put(frame)
        if last:
            inbox.finish(complete=True)

    def _take_tool_call(self, call: Frame) -> None:
        """Record a tool call and, unless told otherwise, answer it in the background."""
        self.tool_calls.append(call)
        if not isinstance(call.get("id"), str):
            self.protocol_errors.append(f"tool_call without a string id: {call!r}")
            return
        hook = self.on_tool_call
        if hook is None and not self.auto_answer_tools:
            return
        # A task per call, so that a hook that waits holds up neither other frames nor pings.
        task = asyncio.create_task(self._answer(call, hook))
        self._answers.add(task)
        task.add_done_callback(self._answers.discard)

    def _take_agent_run(self, run: Frame) -> None:
        """Record a batch run and answer it in the background."""
        self.agent_runs.append(run)
        if not isinstance(run.get("run_id"), str):
            self.protocol_errors.append(f"agent_run without a string run_id: {run!r}")
            return
        self._in_background(self._answer_run(run))

    async def _answer_run(self, run: Frame) -> None:
        """Stream the files of a batch run (or let the hook do it), then ``agent_complete``."""
        if self.on_agent_run is not None:
            await self.on_agent_run(run)
            return
        for frame in await self.run_frames(run):
            await self._send_if_open(frame)

    async def run_frames(self, run: Frame) -> list[Frame]:
        """What this desktop answers to `run`: ``agent_data`` frames, then ``agent_complete``.

        Hooks use it to send the real answer after all (slowly, in part, …).
        """
        run_id = str(run["run_id"])
        if self.shared_folders is None:
            return run_frames(run_id, RunFiles(files=[], errors=[NO_SHARED_FOLDERS]))
        config = run.get("config")
        # Reading a folder blocks: off the event loop, so pings are still answered.
        found = await asyncio.to_thread(
            self.shared_folders.read, config if isinstance(config, dict) else {}
        )
        return run_frames(run_id, found, budget_bytes=self.shared_folders.frame_budget_bytes)

    def _in_background(self, work: Awaitable[None]) -> None:
        task = asyncio.create_task(self._logged(work))
        self._answers.add(task)
        task.add_done_callback(self._answers.discard)

    @staticmethod
    async def _logged(work: Awaitable[None]) -> None:
        try:
            await work
        except Exception:
            _log.exception("answering a batch run failed")

    async def _answer(self, call: Frame, hook: ToolCallHook | None) -> None:
        """Send the ``tool_result`` for `call`: the hook's payload, else the store's."""
        try:
            payload = tool_result_payload(self._store, call) if hook is None else await hook(call)
        except Exception:
            _log.exception("the on_tool_call hook failed on tool_call %s", call["id"])
            return
        if payload is not None:
            await self._send_if_open({"type": "tool_result", "id": call["id"], **payload})

    async def _send_if_open(self, frame: Frame) -> None:
        """Send `frame` unless the connection has closed; the reader reports the close."""
        try:
            await self.send_json(frame)
        except DeviceClosedError:
            _log.debug("not sent, the connection is closed: %s", frame["type"])

    def _closed_error(self) -> DeviceClosedError:
        return DeviceClosedError(self.close_code, self.close_reason)


# --- frames and URLs ---------------------------------------------------------------


def _without_none(frame: Frame) -> Frame:
    """`frame` without its None fields: optional fields are left out, not sent as null."""
    return {key: value for key, value in frame.items() if value is not None}


def home_request(
    message: str,
    *,
    request_id: str | None = None,
    thread_id: str | None = None,
    conversation_history: list[dict[str, str]] | None = None,
) -> Frame:
    """A ``home_request`` frame."""
    return _without_none(
        {
            "type": "home_request",
            "request_id": request_id,
            "message": message,
            "conversation_history": conversation_history,
            "thread_id": thread_id,
        }
    )


def floating_request(
    message: str,
    scope_type: ScopeType,
    scope_id: str | None = None,
    *,
    request_id: str | None = None,
    thread_id: str | None = None,
) -> Frame:
    """A ``floating_request`` frame about one task, project, note or timeline."""
    return _without_none(
        {
            "type": "floating_request",
            "request_id": request_id,
            "message": message,
            "scope": _without_none({"type": scope_type, "id": scope_id}),
            "thread_id": thread_id,
        }
    )


def tool_result_payload(store: LocalStore, call: Frame) -> Frame:
    """What the desktop app answers to `call`: its fields run through `LocalStore.execute`.

    `on_tool_call` hooks use it to answer from the store after all (late, say).
    """
    return store.execute(
        action=str(call.get("action")),
        table=call.get("table"),
        data=call.get("data"),
        filters=call.get("filters"),
        vector=call.get("vector"),
        limit=call.get("limit"),
    )


def device_url(server: str, token: str) -> str:
    """The device WebSocket URL for a server base URL (http → ws, https → wss)."""
    parts = urlsplit(server)
    scheme = _WS_SCHEMES.get(parts.scheme)
    if scheme is None or not parts.netloc:
        msg = f"server must be an http(s) URL such as http://127.0.0.1:8000, got {server!r}"
        raise ValueError(msg)
    path = parts.path.rstrip("/") + DEVICE_PATH
    return urlunsplit((scheme, parts.netloc, path, urlencode({"token": token}), ""))


# --- accounts ------------------------------------------------------------------


async def register(
    server: str, email: str, password: str, *, http: httpx.AsyncClient | None = None
) -> dict[str, Any]:
    """Create an account; return its ``AuthTokens``. Raises AuthError (409 if it exists).

    Pass `http` to reuse one connection pool across many calls (benchmarks).
    """
    return await _auth_call(server, "register", email, password, http)


async def login(
    server: str, email: str, password: str, *, http: httpx.AsyncClient | None = None
) -> dict[str, Any]:
    """Log in; return the ``AuthTokens``. Raises AuthError (401 on bad credentials)."""
    return await _auth_call(server, "login", email, password, http)


async def register_or_login(
    server: str, email: str, password: str, *, http: httpx.AsyncClient | None = None
) -> dict[str, Any]:
    """Register, or log in if the account already exists; return the ``AuthTokens``."""
    try:
        return await register(server, email, password, http=http)
    except AuthError as error:
        if error.status_code != httpx.codes.CONFLICT:
            raise
    return await login(server, email, password, http=http)


async def _auth_call(
    server: str, action: str, email: str, password: str, http: httpx.AsyncClient | None
) -> dict[str, Any]:
    """POST the credentials to ``/auth/<action>`` and return the tokens."""
    url = f"{server.rstrip('/')}{AUTH_PATH}/{action}"
    body = {"email": email, "password": password}
    if http is None:
        async with httpx.AsyncClient(timeout=HTTP_TIMEOUT_S) as own:
            response = await own.post(url, json=body)
    else:
        response = await http.post(url, json=body)
    return _tokens(action, response)


def _tokens(action: str, response: httpx.Response) -> dict[str, Any]:
    """The ``AuthTokens`` of a successful response; raise AuthError otherwise."""
    if not response.is_success:
        raise AuthError(action, response.status_code, _error_detail(response))
    try:
        tokens = response.json()
    except ValueError:
        tokens = None
    if not isinstance(tokens, dict) or not isinstance(tokens.get("access_token"), str):
        raise AuthError(action, response.status_code, "the response has no access_token")
    return tokens


def _error_detail(response: httpx.Response) -> str:
    """The ``detail`` of an error response, else an excerpt of its body."""
    try:
        detail = response.json()["detail"]
    except (ValueError, KeyError, TypeError):
        return response.text[:_EXCERPT_CHARS] or response.reason_phrase
    return detail if isinstance(detail, str) else json.dumps(detail)
