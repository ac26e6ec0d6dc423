"""Marketplace tests: the app with billing on the fake Stripe, blobs on the disk, and
helpers to build packages, submit, review and install."""

from __future__ import annotations

import io
import json
import stat
import uuid
import zipfile
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text

from app.auth import service as auth_service
from app.auth.models import Role
from app.core.settings import Settings
from app.main import create_app
from tests.billing.conftest import Account, register
from tests.billing.fake_stripe import FakeStripe, billing_settings

PLUGINS = "/api/v1/plugins"


def package(files: dict[str, bytes] | None = None) -> bytes:
    """A zip of `files` (name → bytes)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in (files or {"index.js": b"export default () => 'hi';\n"}).items():
            archive.writestr(name, data)
    return buffer.getvalue()


def symlink_package() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("index.js", b"ok")
        link = zipfile.ZipInfo("secrets")
        link.create_system = 3  # Unix, so external_attr holds the mode
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        archive.writestr(link, "/etc/passwd")
    return buffer.getvalue()


def manifest(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": f"Plugin {uuid.uuid4().hex[:8]}",
        "description": "Turns meeting notes into tasks",
        "version": "1.0.0",
        "category": "productivity",
        "permissions": ["notes:read", "tasks:write"],
        "price_cents": 0,
    }
    body.update(changes)
    return body


async def submit(
    client: httpx.AsyncClient,
    account: Account,
    body: dict[str, Any] | str | None = None,
    data: bytes | None = None,
) -> httpx.Response:
    text_manifest = body if isinstance(body, str) else json.dumps(body or manifest())
    zipped = data if data is not None else package()
    return await client.post(
        PLUGINS,
        data={"manifest": text_manifest},
        files={"package": ("plugin.zip", zipped, "application/zip")},
        headers=account.auth,
    )


async def rows(app: FastAPI, statement: str, **params: object) -> list[tuple[Any, ...]]:
    async with app.state.engine.begin() as conn:
        result = await conn.execute(text(statement), params)
        return [tuple(row) for row in result] if result.returns_rows else []


async def set_tier(app: FastAPI, account: Account, tier: str) -> None:
    await rows(app, "UPDATE users SET tier = :tier WHERE id = :id", tier=tier, id=account.user_id)


async def user_on(app: FastAPI, client: httpx.AsyncClient, tier: str) -> Account:
    account = await register(client)
    await set_tier(app, account, tier)
    return account


async def make_reviewer(app: FastAPI, account: Account) -> None:
    async with app.state.sessionmaker() as session:
        assert await auth_service.grant_role(
            session=session, email=account.email, role=Role.REVIEWER
        )


async def review(
    client: httpx.AsyncClient, reviewer: Account, plugin_id: str, decision: str = "approve"
) -> httpx.Response:
    return await client.post(
        f"{PLUGINS}/{plugin_id}/review",
        json={"decision": decision, "notes": "looked at it"},
        headers=reviewer.auth,
    )


class Market:
    """An author, a reviewer and a helper that publishes approved plugins."""

    def __init__(self, app: FastAPI, client: httpx.AsyncClient) -> None:
        self.app, self.client = app, client
        self.author: Account
        self.reviewer: Account

    async def start(self) -> Market:
        self.author = await register(self.client)
        self.reviewer = await register(self.client)
        await make_reviewer(self.app, self.reviewer)
        return self

    async def publish(self, data: bytes | None = None, **changes: Any) -> str:
        """Submit and approve a plugin; its id."""
        submitted = await submit(self.client, self.author, manifest(**changes), data)
        assert submitted.status_code == 201, submitted.text
        plugin_id = str(submitted.json()["id"])
        approved = await review(self.client, self.reviewer, plugin_id)
        assert approved.status_code == 200, approved.text
        return plugin_id


@pytest.fixture
def settings(
    make_settings: Callable[..., Settings],
    database_url: str,
    stripe_fake: FakeStripe,
    tmp_path: Path,
) -> Settings:
    return make_settings(
        database_url=database_url,
        data_dir=tmp_path / "data",
        rate_limit_free=100_000,
        rate_limit_pro=100_000,
        rate_limit_power=100_000,
        rate_limit_anonymous=100_000,
        **billing_settings(stripe_fake),
    )


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[FastAPI]:
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def market(app: FastAPI, client: httpx.AsyncClient) -> Market:
    return await Market(app, client).start()


@pytest.fixture
async def power(app: FastAPI, client: httpx.AsyncClient) -> Account:
    return await user_on(app, client, "power")


def blob_files(settings: Settings) -> set[str]:
    root = settings.data_dir / "blobs"
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}
