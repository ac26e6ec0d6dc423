"""The real app served by uvicorn on a loopback port, inside the test's event loop.

In-process so tests can script the chat handler and look at server-side state
(the device registry, pending calls); everything between client and server
still crosses a real socket.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import uvicorn
from fastapi import FastAPI

from app.core.settings import Settings
from tests.e2e.server_process import free_port


@asynccontextmanager
async def serve(app: FastAPI, settings: Settings) -> AsyncIterator[str]:
    """Serve `app` (built for `settings`) until the block ends; yields its base URL."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host="127.0.0.1",
            port=port,
            log_config=None,
            access_log=False,
            ws_max_size=settings.ws_hard_limit_bytes,
            timeout_graceful_shutdown=2,
        )
    )
    task = asyncio.create_task(server.serve())
    async with asyncio.timeout(20):
        while not server.started:
            if task.done():
                await task  # raises the start-up error
            await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task
