"""Batch tests: the mail and chat providers' fakes, served on loopback for a test."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.batch.provider_fakes import ProviderFakes, served_fakes


@pytest.fixture
async def providers() -> AsyncIterator[ProviderFakes]:
    async with served_fakes() as fakes:
        yield fakes
