"""Fixtures of the tool tests: a connected desktop bound to the test's request."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from app.device.calls import CallTarget, calls_go_to
from tests.tools.fake_desktop import StoreDesktop


@pytest.fixture
def desktop() -> Iterator[StoreDesktop]:
    """A connected desktop bound to the test's request, as the chat layer binds it."""
    desk = StoreDesktop()
    with calls_go_to(CallTarget(link=desk.link, timeout_s=2.0, request_id="r1")):
        yield desk
    desk.store.close()
