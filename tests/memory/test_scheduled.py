"""The scheduled habit pass keeps running through failures."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from app.core.database import create_engine, create_sessionmaker
from app.core.keys import MasterKeyring
from app.core.secrets import resolve_secrets
from app.core.settings import Settings
from app.memory.scheduled import run_pattern_pass_forever
from tests.e2e.server_process import free_port


@pytest.mark.integration  # its database is a closed loopback port
async def test_a_failed_pass_does_not_end_the_job(
    make_settings: Callable[..., Settings], caplog: pytest.LogCaptureFixture
) -> None:
    settings = make_settings(database_url=f"postgresql+asyncpg://x@127.0.0.1:{free_port()}/x")
    assert settings.database_url is not None
    engine = create_engine(settings.database_url)
    job = asyncio.create_task(
        run_pattern_pass_forever(
            sessionmaker=create_sessionmaker(engine),
            keyring=MasterKeyring.from_settings(resolve_secrets(settings)),
            interval_s=0.01,
        )
    )
    try:
        async with asyncio.timeout(20):
            while len([r for r in caplog.records if "habits failed" in r.message]) < 2:  # noqa: ASYNC110 - log records have no event
                await asyncio.sleep(0.01)
        assert not job.done()
    finally:
        job.cancel()
        await asyncio.gather(job, return_exceptions=True)
        await engine.dispose()
