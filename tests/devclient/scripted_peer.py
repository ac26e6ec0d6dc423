"""A scripted stand-in for the server's device WebSocket, driven frame by frame by a test.

`scripted_peer()` listens on a random loopback port; `ScriptedPeer.accept()`
hands the test the next connection, whose frames the test sends and receives
itself. Every wait is bounded by `TIMEOUT_S` so a broken client fails fast.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from websockets.asyncio.server import ServerConnection, serve

TIMEOUT_S = 5.0

Frame = dict[str, Any]


class PeerConnection:
    """The server side of one client connection."""

    def __init__(self, websocket: ServerConnection) -> None:
        self.websocket = websocket

    @property
    def path(self) -> str:
        """The request target the client connected to, query string included."""
        assert self.websocket.request is not None
        return self.websocket.request.path

    async def send(self, frame: Frame) -> None:
        await self.websocket.send(json.dumps(frame))

    async def send_raw(self, message: str | bytes) -> None:
        await self.websocket.send(message)

    async def recv_raw(self) -> str:
        async with asyncio.timeout(TIMEOUT_S):
            message = await self.websocket.recv()
        assert isinstance(message, str), "the client sent a binary message"
        return message

    async def recv(self) -> Frame:
        frame = json.loads(await self.recv_raw())
        assert isinstance(frame, dict)
        return frame

    async def close(self, code: int, reason: str) -> None:
        async with asyncio.timeout(TIMEOUT_S):
            await self.websocket.close(code, reason)


class ScriptedPeer:
    """A listening peer; `url` is its http base URL, as the client is given a server's."""

    def __init__(self, url: str, connections: asyncio.Queue[ServerConnection]) -> None:
        self.url = url
        self._connections = connections

    async def accept(self) -> PeerConnection:
        async with asyncio.timeout(TIMEOUT_S):
            return PeerConnection(await self._connections.get())


@asynccontextmanager
async def scripted_peer() -> AsyncIterator[ScriptedPeer]:
    """Listen on 127.0.0.1 (random port) until the block ends."""
    connections: asyncio.Queue[ServerConnection] = asyncio.Queue()

    async def handler(websocket: ServerConnection) -> None:
        await connections.put(websocket)
        await websocket.wait_closed()

    async with serve(handler, "127.0.0.1", 0, ping_interval=None) as server:
        port = server.sockets[0].getsockname()[1]
        yield ScriptedPeer(f"http://127.0.0.1:{port}", connections)
