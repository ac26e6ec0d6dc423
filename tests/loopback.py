"""Serve a test's ASGI app (a scripted model, a fake Stripe) on loopback, in its event loop."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import uvicorn
from starlette.types import ASGIApp

STARTUP_TIMEOUT_S = 10.0


@asynccontextmanager
async def serve_on_loopback(app: ASGIApp) -> AsyncIterator[int]:
    """Serve `app` on 127.0.0.1 until the block ends; yields its (random) port.

    The socket is bound before start-up, so there is no race for the port.
    """
    # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY on accepted connections only
    # when the listening socket says TCP, and without it every reused
    # keep-alive connection stalls ~40 ms (Nagle against delayed ACKs).
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            log_config=None,
            log_level="warning",
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=1,
        )
    )
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        async with asyncio.timeout(STARTUP_TIMEOUT_S):
            while not server.started:
                if task.done():
                    await task  # raises the start-up error
                    msg = "the loopback server stopped during start-up"
                    raise RuntimeError(msg)
                await asyncio.sleep(0.005)
        yield int(sock.getsockname()[1])
    finally:
        server.should_exit = True
        await task
        sock.close()
