"""Marks every test `unit`, `integration` or `e2e` by what it uses; unit tests run offline.

- `e2e`: the real server over loopback or as a process (everything under tests/e2e/ and
  tests/rest/).
- `integration`: a real PostgreSQL or other sockets: a test whose fixtures include one of
  `INTEGRATION_FIXTURES`, or one marked `@pytest.mark.integration` because it opens a
  socket or starts a server itself.
- `unit`: everything else. These run with network sockets disabled (pytest-socket), so a
  unit test that reaches for the network fails instead of quietly depending on it. Unix
  sockets stay allowed: every asyncio event loop wakes itself through a socket pair.
  `make test-fast` runs them alone (`pytest -m unit`).

A test marked explicitly keeps its mark.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import pytest_socket

KINDS = ("unit", "integration", "e2e")

_TESTS = Path(__file__).resolve().parent
_E2E_DIRECTORIES = (_TESTS / "e2e", _TESTS / "rest")
# Fixtures that make a test an integration test, wherever it is used.
INTEGRATION_FIXTURES = frozenset(
    {
        "databases",  # the test PostgreSQL; every database fixture depends on it
        "app_without_database",  # an app whose database is a closed loopback port
        "client_without_database",
        "peer",  # devclient's tests: a scripted server on loopback
    }
)


def _kind(item: pytest.Item) -> str:
    path = item.path.resolve()
    if any(path.is_relative_to(directory) for directory in _E2E_DIRECTORIES):
        return "e2e"
    if INTEGRATION_FIXTURES.intersection(getattr(item, "fixturenames", ())):
        return "integration"
    return "unit"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "unit: no database, no network; runs with sockets off")
    config.addinivalue_line("markers", "integration: a real PostgreSQL or loopback sockets")
    config.addinivalue_line("markers", "e2e: the real server, over loopback or as a process")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if not any(item.get_closest_marker(kind) for kind in KINDS):
            item.add_marker(_kind(item))


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    # First, so the test's fixtures run offline too.
    if item.get_closest_marker("unit"):
        pytest_socket.disable_socket(allow_unix_socket=True)


def pytest_runtest_teardown(item: pytest.Item) -> None:
    if item.get_closest_marker("unit"):
        pytest_socket.enable_socket()
