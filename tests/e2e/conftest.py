"""A live server on loopback with a scripted chat handler, and devclient desktops."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from app.core.settings import Settings
from app.device.connection import ChatHandler, ChatTurn
from app.device.link import DeviceLink
from app.device.registry import DeviceRegistry
from app.main import create_app
from devclient.client import DeviceClient, Frame, register
from devclient.store import LocalStore
from protocol.errors import ToolCallError
from protocol.frames import StreamStart, StreamText
from tests.e2e.assistant_policy import AssistantPolicy
from tests.e2e.live_server import serve
from tests.llm.scripted_openai import ScriptedLLM, scripted_llm


async def scripted_turn(turn: ChatTurn) -> None:
    """Stands in for the assistant: the message is a JSON script of tool calls.

    `{"calls": [{"action": ..., "table": ..., ...}], "say": "...", "repeat": n,
    "sleep": s, "crash": bool}`: each call's result (or error) is streamed back
    as one text chunk; `say` is said `repeat` times in one chunk; `crash` raises
    after the calls, as a bug would.
    """
    script = json.loads(turn.request.message)
    await turn.emit(StreamStart(request_id=turn.request_id))
    for call in script.get("calls", []):
        try:
            result: Any = await turn.target.execute(**call)
        except ToolCallError as exc:
            result = {"tool_error": type(exc).__name__, "message": str(exc)}
        await turn.emit(StreamText(request_id=turn.request_id, chunk=json.dumps(result) + "\n"))
    await asyncio.sleep(script.get("sleep", 0))
    if script.get("crash"):
        raise RuntimeError("scripted crash")
    if "say" in script:
        chunk = script["say"] * script.get("repeat", 1)
        await turn.emit(StreamText(request_id=turn.request_id, chunk=chunk))


def script(
    *calls: dict[str, Any],
    say: str | None = None,
    repeat: int = 1,
    sleep: float = 0,
    crash: bool = False,
) -> str:
    body: dict[str, Any] = {"calls": list(calls), "sleep": sleep, "crash": crash}
    if say is not None:
        body["say"] = say
        body["repeat"] = repeat
    return json.dumps(body)


class UnansweredToolCalls:
    """An `on_tool_call` hook for a desktop that never answers; says when a call arrived."""

    def __init__(self) -> None:
        self._arrived = asyncio.Event()

    async def __call__(self, call: Frame) -> None:
        self._arrived.set()
        await asyncio.Event().wait()  # hold the call until the client closes

    async def first(self, timeout_s: float = 10) -> None:
        await asyncio.wait_for(self._arrived.wait(), timeout_s)


@dataclass
class Account:
    email: str
    token: str
    user_id: uuid.UUID
    refresh_token: str = ""


@dataclass
class Live:
    base_url: str
    app: FastAPI
    tmp_path: Path
    clients: list[DeviceClient] = field(default_factory=list)
    policy: AssistantPolicy = field(default_factory=AssistantPolicy)
    llm: ScriptedLLM | None = None

    @property
    def registry(self) -> DeviceRegistry:
        registry: DeviceRegistry = self.app.state.device_registry
        return registry

    async def account(self, email: str | None = None) -> Account:
        email = email or f"{uuid.uuid4().hex[:8]}@example.com"
        tokens = await register(self.base_url, email, "a long passphrase")
        token = str(tokens["access_token"])
        profile = (await self.get("/api/v1/auth/me", token)).json()
        return Account(
            email=email,
            token=token,
            user_id=uuid.UUID(profile["id"]),
            refresh_token=str(tokens["refresh_token"]),
        )

    def link(self, account: Account, device_id: str | None = None) -> DeviceLink:
        """The server's side of a connected desktop."""
        link = self.registry.device(account.user_id, device_id)
        assert link is not None, "the desktop is not connected"
        return link

    async def desktop(
        self, account: Account, device_id: str = "desk", **options: Any
    ) -> DeviceClient:
        store = LocalStore(self.tmp_path / f"{uuid.uuid4().hex}.sqlite3")
        client = await DeviceClient.connect(
            server=self.base_url, token=account.token, device_id=device_id, store=store, **options
        )
        self.clients.append(client)
        return client

    async def get(self, path: str, token: str | None = None) -> httpx.Response:
        """An HTTP GET that does not block the loop the server runs in."""
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        async with httpx.AsyncClient(base_url=self.base_url) as http:
            return await http.get(path, headers=headers)

    async def post(self, path: str, token: str | None, body: dict[str, Any]) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        async with httpx.AsyncClient(base_url=self.base_url, timeout=30) as http:
            return await http.post(path, json=body, headers=headers)

    async def delete(self, path: str, token: str | None) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        async with httpx.AsyncClient(base_url=self.base_url, timeout=30) as http:
            return await http.delete(path, headers=headers)

    async def until(self, condition: Callable[[], bool], timeout_s: float = 5) -> None:
        async with asyncio.timeout(timeout_s):
            while not condition():  # noqa: ASYNC110 - server state has no event to wait on
                await asyncio.sleep(0.01)


LIVE_DEFAULTS: dict[str, Any] = {
    "tool_call_timeout_s": 2.0,
    "ws_ping_interval_s": 30.0,
    "ws_idle_timeout_s": 90.0,
    "ws_max_frame_bytes": 64 * 1024,
}


@pytest.fixture
def live_settings() -> dict[str, Any]:
    """Override in a test module (or parametrize) to change the live server's settings."""
    return {}


@asynccontextmanager
async def running(
    settings: Settings, server: Live, *, chat_handler: ChatHandler | None = None
) -> AsyncIterator[Live]:
    """Serve a new app for `settings` as `server`; close the test's desktops when done.

    Used again on the same `Live` (same database), it is a server restart.
    """
    app = create_app(settings, chat_handler=chat_handler)
    async with serve(app, settings) as base_url:
        server.base_url, server.app = base_url, app
        try:
            yield server
        finally:
            for client in server.clients:
                await client.close()
            server.clients.clear()


@pytest.fixture
async def live(
    make_settings: Callable[..., Settings],
    database_url: str,
    live_settings: dict[str, Any],
    tmp_path: Path,
) -> AsyncIterator[Live]:
    """The real server whose chat handler is `scripted_turn` (no model involved)."""
    settings = make_settings(database_url=database_url, **{**LIVE_DEFAULTS, **live_settings})
    server = Live(base_url="", app=FastAPI(), tmp_path=tmp_path)
    async with running(settings, server, chat_handler=scripted_turn):
        yield server


@pytest.fixture
def assistant_settings(
    make_settings: Callable[..., Settings], database_url: str, live_settings: dict[str, Any]
) -> Callable[[str], Settings]:
    """Settings for a server whose model is the scripted LLM at `api_base`."""

    def make(api_base: str) -> Settings:
        values = {
            "database_url": database_url,
            "llm_model": "openai/scripted",
            "llm_api_base": api_base,
            "llm_api_key": "test-key",
            "llm_max_retries": 0,
            # Embeddings stay off unless a test sets EMBEDDING_MODEL in live_settings.
            "embedding_api_base": api_base,
            "embedding_api_key": "test-key",
            **LIVE_DEFAULTS,
        }
        return make_settings(**{**values, **live_settings})

    return make


@pytest.fixture
async def assistant(
    assistant_settings: Callable[[str], Settings], tmp_path: Path
) -> AsyncIterator[Live]:
    """The real server with the real chat service; the model is scripted on loopback."""
    server = Live(base_url="", app=FastAPI(), tmp_path=tmp_path)
    async with scripted_llm(server.policy) as llm:
        server.llm = llm
        async with running(assistant_settings(llm.api_base), server):
            yield server
