"""Fixtures of the tool tests: a connected desktop bound to the test's request."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.tools.fake_desktop import StoreDesktop


@pytest.fixture
def desktop() -> Iterator[StoreDesktop]:
    """A connected desktop bound to the test's request, as the chat layer binds it."""
    desk = StoreDesktop()
    with desk.connected():
        yield desk
    desk.store.close()
