"""The marketplace as new users would try it, against the real server on loopback:

an author submits a plugin; an operator makes a reviewer with `python -m app
grant-role` (a real process on the same database) and the reviewer approves it; a
user who pays for the power plan (the fake Stripe, the signed webhook) finds it by
searching, installs it and downloads the package through the signed link; a free
user is refused clearly.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import sys
import zipfile
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.billing.fake_stripe import FakeStripe, billing_settings, sign
from tests.e2e.conftest import Account, Live

PLUGINS = "/api/v1/plugins"


@pytest.fixture
def live_settings(stripe_fake: FakeStripe) -> dict[str, Any]:
    return billing_settings(stripe_fake)


def plugin_package() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("manifest.json", json.dumps({"entry": "main.js"}))
        archive.writestr("main.js", "export function run() { return 'standup ready'; }\n")
    return buffer.getvalue()


async def grant_reviewer(database_url: str, email: str, data_dir: Path) -> None:
    """What an operator runs: `python -m app grant-role EMAIL reviewer`."""
    env = {key: value for key, value in os.environ.items() if key != "DATABASE_URL"}
    env.update(DATABASE_URL=database_url, DATA_DIR=str(data_dir), ENV="dev")
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "app",
        "grant-role",
        email,
        "reviewer",
        env=env,
        cwd=data_dir,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode == 0, output.decode(errors="replace")


async def test_an_author_publishes_a_power_user_finds_installs_and_downloads_it(
    live: Live, stripe_fake: FakeStripe, database_url: str, tmp_path: Path
) -> None:
    author, reviewer, power, free = [await live.account() for _ in range(4)]

    def auth(account: Account) -> dict[str, str]:
        return {"Authorization": f"Bearer {account.token}"}

    package = plugin_package()
    async with httpx.AsyncClient(base_url=live.base_url, timeout=30) as http:
        manifest = {
            "name": "Standup Writer",
            "description": "Writes your daily standup from yesterday's finished tasks",
            "version": "1.0.0",
            "category": "writing",
            "permissions": ["tasks:read", "notes:write"],
            "price_cents": 0,
        }
        submitted = await http.post(
            PLUGINS,
            data={"manifest": json.dumps(manifest)},
            files={"package": ("standup.zip", package, "application/zip")},
            headers=auth(author),
        )
        assert submitted.status_code == 201, submitted.text
        plugin_id = submitted.json()["id"]

        not_yet = await http.post(
            f"{PLUGINS}/{plugin_id}/review", json={"decision": "approve"}, headers=auth(reviewer)
        )
        assert not_yet.status_code == 403
        await grant_reviewer(database_url, reviewer.email, tmp_path)
        queue = await http.get(f"{PLUGINS}/review", headers=auth(reviewer))
        assert [item["id"] for item in queue.json()] == [plugin_id]
        approved = await http.post(
            f"{PLUGINS}/{plugin_id}/review",
            json={"decision": "approve", "notes": "Reads tasks, writes one note: fine."},
            headers=auth(reviewer),
        )
        assert approved.status_code == 200, approved.text

        # The power user pays for the plan through Stripe first.
        checkout = await http.post(
            "/api/v1/billing/checkout", json={"tier": "power"}, headers=auth(power)
        )
        session_id = checkout.json()["checkout_url"].rsplit("/", 1)[1]
        payload = json.dumps(stripe_fake.checkout_completed(session_id))
        paid = await http.post(
            "/api/v1/billing/webhook",
            content=payload,
            headers={"Content-Type": "application/json", "Stripe-Signature": sign(payload)},
        )
        assert paid.status_code == 200

        found = await http.get(PLUGINS, params={"q": "standup tasks"}, headers=auth(power))
        assert [p["id"] for p in found.json()["plugins"]] == [plugin_id]
        installed = await http.post(f"{PLUGINS}/{plugin_id}/install", headers=auth(power))
        assert installed.status_code == 200, installed.text
        download_url = installed.json()["download_url"]
        assert download_url.startswith(f"{live.base_url}{PLUGINS}/download/")
        async with httpx.AsyncClient(timeout=30) as anyone:  # the link is the permission
            downloaded = await anyone.get(download_url)

        refused = await http.post(f"{PLUGINS}/{plugin_id}/install", headers=auth(free))

    assert downloaded.status_code == 200
    assert downloaded.content == package
    assert refused.status_code == 403
    assert refused.json() == {
        "detail": "Your plan (free) does not include the plugin marketplace; "
        "upgrade to power or team to use it"
    }
