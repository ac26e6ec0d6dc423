"""The server never decrypts stored data: no key path reaches the storage package.

Beside these checks, every storage test that reads a backend compares the stored
bytes with the uploaded ones: the server keeps exactly what it was sent.
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, get_args

from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute

from app.core.dependencies import KeyringDep
from app.memory.router import router as memory_router
from app.storage.router import router

STORAGE_PACKAGE = Path(__file__).resolve().parents[2] / "app" / "storage"
# Modules that hold or use keys: the master keyring, users' data keys, ciphers.
KEY_MODULES = (
    "cryptography",
    "nacl",
    "Crypto",
    "app.core.keys",
    "app.core.security",
    "app.memory.cipher",
    "app.chat.checkpoint_cipher",
)


def imported_modules(path: Path) -> Iterator[str]:
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            yield node.module
            yield from (f"{node.module}.{alias.name}" for alias in node.names)


def is_key_module(name: str) -> bool:
    return any(name == module or name.startswith(f"{module}.") for module in KEY_MODULES)


def dependencies(dependant: Dependant) -> Iterator[Callable[..., Any] | None]:
    for sub in dependant.dependencies:
        yield sub.call
        yield from dependencies(sub)


def test_no_storage_module_imports_a_key_or_cipher_module() -> None:
    modules = sorted(STORAGE_PACKAGE.glob("*.py"))
    assert len(modules) > 5

    found = {path.name: sorted(filter(is_key_module, imported_modules(path))) for path in modules}

    assert {name: names for name, names in found.items() if names} == {}


def given_the_keyring(routes: list[Any]) -> list[str]:
    keyring = get_args(KeyringDep)[1].dependency
    return [
        route.path
        for route in routes
        if isinstance(route, APIRoute) and keyring in dependencies(route.dependant)
    ]


def test_no_storage_route_is_given_the_keyring() -> None:
    assert len(router.routes) == 13
    # The check sees the keyring where it is: memory decrypts with the user's key.
    assert "/memory" in given_the_keyring(memory_router.routes)

    assert given_the_keyring(router.routes) == []
