"""Quotas: records, vectors and backups count together, exactly, even under concurrent
uploads; over the quota after a downgrade storage is read-only."""

from __future__ import annotations

import asyncio
import os
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from tests.batch.test_agents_api import AGENTS, agent_body
from tests.billing import conftest as billing
from tests.billing.conftest import Account
from tests.billing.fake_stripe import FakeStripe, billing_settings
from tests.storage.conftest import StoredBlobs, b64, occupy, set_tier, sha256, subscriber

RECORDS = "/api/v1/storage/records"
USAGE = "/api/v1/storage/usage"
GIB = 1024**3
SIZE = 10_000


def record(data: bytes) -> dict[str, str]:
    return {"table": "notes", "blob": b64(data), "checksum": sha256(data)}


def upload(
    client: httpx.AsyncClient, account: Account | billing.Account, kind: str, data: bytes
) -> Any:
    """One upload of `data` as a record, a vector item or a backup."""
    if kind == "record":
        return client.post(RECORDS, json=record(data), headers=account.auth)
    if kind == "vector":
        item = {"id": os.urandom(8).hex(), "blob": b64(data), "checksum": sha256(data)}
        return client.post(
            "/api/v1/storage/vectors/upsert", json={"vectors": [item]}, headers=account.auth
        )
    headers = {
        **account.auth,
        "X-Backup-Version": "1",
        "X-Backup-Timestamp": "1763000000000",
        "X-Backup-Checksum": sha256(data),
    }
    return client.put("/api/v1/backup", content=data, headers=headers)


async def used(client: httpx.AsyncClient, account: Account) -> int:
    response = await client.get(USAGE, headers=account.auth)
    assert response.status_code == 200
    return int(response.json()["used_bytes"])


@pytest.mark.parametrize(
    "kinds",
    [["record"] * 20, ["record", "vector", "backup", "vector"] * 5],
    ids=["records", "records-vectors-backups"],
)
async def test_twenty_concurrent_uploads_fill_the_quota_exactly_and_no_further(
    app: FastAPI,
    client: httpx.AsyncClient,
    pro: Account,
    stored: StoredBlobs,
    kinds: list[str],
) -> None:
    room = 7 * SIZE + SIZE // 2  # seven fit, the eighth does not
    await occupy(app, pro, 5 * GIB - room)
    bodies = [os.urandom(SIZE) for _ in kinds]

    responses = await asyncio.gather(
        *(upload(client, pro, kind, data) for kind, data in zip(kinds, bodies, strict=True))
    )

    accepted = [data for data, r in zip(bodies, responses, strict=True) if r.status_code < 300]
    refused = [r for r in responses if r.status_code >= 300]
    assert len(accepted) == 7, [r.text for r in responses]
    assert {r.status_code for r in refused} == {403}
    assert all(
        r.json()["detail"].startswith("Storage quota exceeded: the pro plan allows 5 GiB")
        for r in refused
    )
    assert await used(client, pro) == 5 * GIB - room + 7 * SIZE
    # The refused uploads' blobs were written first, then removed.
    assert sorted(stored.read(key) for key in stored.listing()) == sorted(accepted)


async def test_usage_shows_the_plans_quota(app: FastAPI, client: httpx.AsyncClient) -> None:
    quotas = {}
    for tier in ("free", "pro", "power", "team"):
        account = await subscriber(app, client, tier)
        quotas[tier] = (await client.get(USAGE, headers=account.auth)).json()

    assert quotas == {
        "free": {"used_bytes": 0, "quota_bytes": 0},
        "pro": {"used_bytes": 0, "quota_bytes": 5 * GIB},
        "power": {"used_bytes": 0, "quota_bytes": 25 * GIB},
        "team": {"used_bytes": 0, "quota_bytes": None},
    }


async def test_unlimited_plans_are_not_capped(
    app: FastAPI, client: httpx.AsyncClient, stored: StoredBlobs
) -> None:
    team = await subscriber(app, client, "team")
    await occupy(app, team, 40 * GIB)

    response = await upload(client, team, "record", b"more")

    assert response.status_code == 201
    assert await used(client, team) == 40 * GIB + 4


async def test_over_quota_after_a_downgrade_reads_and_deletes_but_never_writes(
    app: FastAPI, client: httpx.AsyncClient, stored: StoredBlobs
) -> None:
    account = await subscriber(app, client, "power")
    created = await upload(client, account, "record", b"kept")
    record_id = created.json()["id"]
    await occupy(app, account, 6 * GIB)
    await set_tier(app, account, "pro")  # 6 GiB stored, 5 allowed

    writes = [
        await upload(client, account, "record", b"new"),
        await upload(client, account, "vector", b"new"),
        await upload(client, account, "backup", b"new"),
        await client.put(
            f"{RECORDS}/{record_id}",
            json={"blob": b64(b"x"), "checksum": sha256(b"x")},
            headers=account.auth,
        ),
    ]
    read = await client.get(f"{RECORDS}/{record_id}", headers=account.auth)
    deleted = await client.delete(f"{RECORDS}/{record_id}", headers=account.auth)

    for response in writes:
        assert response.status_code == 403
        assert response.json() == {
            "detail": "Storage is read-only: 6 GiB stored, more than the pro plan's 5 GiB; "
            "delete some to write again"
        }
    assert (read.status_code, read.content) == (200, b"kept")
    assert deleted.status_code == 200
    assert stored.listing() == set()


class TestDowngradeThroughBilling:
    @pytest.fixture
    def storage_settings(self, stripe_fake: FakeStripe) -> dict[str, Any]:
        return billing_settings(stripe_fake)

    async def test_subscription_reports_read_only_storage_until_data_is_deleted(
        self, client: httpx.AsyncClient, stripe_fake: FakeStripe
    ) -> None:
        account = await billing.register(client)
        subscription_id = await billing.subscribe(client, stripe_fake, account, "pro")
        ids = [
            (await upload(client, account, "record", b"x" * 1024)).json()["id"] for _ in range(2)
        ]

        ended = stripe_fake.subscription_event(subscription_id, "deleted")
        assert (await billing.deliver(client, ended)).status_code == 200
        subscription = (
            await client.get("/api/v1/billing/subscription", headers=account.auth)
        ).json()
        refused = await upload(client, account, "record", b"more")
        readable = await client.get(f"{RECORDS}/{ids[0]}", headers=account.auth)

        assert subscription["tier"] == "free"
        assert subscription["restrictions"] == [
            {
                "kind": "storage",
                "detail": "Storage is read-only: 2 KiB stored, more than the free plan's 0 bytes;"
                " nothing was deleted, and deleting some makes it writable again",
            }
        ]
        assert refused.status_code == 403
        assert readable.content == b"x" * 1024
        for record_id in ids:
            assert (await client.delete(f"{RECORDS}/{record_id}", headers=account.auth)).is_success
        after = (await client.get("/api/v1/billing/subscription", headers=account.auth)).json()
        assert after["restrictions"] == []

    async def test_subscription_reports_agents_and_storage_restrictions_together(
        self, client: httpx.AsyncClient, stripe_fake: FakeStripe
    ) -> None:
        # One registry holds both domains' downgrade effects (app.tiers.downgrade).
        account = await billing.register(client)
        subscription_id = await billing.subscribe(client, stripe_fake, account, "pro")
        for number in range(1, 4):
            created = await client.post(
                AGENTS, json=agent_body(name=f"Agent {number}"), headers=account.auth
            )
            assert created.status_code == 201, created.text
        assert (await upload(client, account, "record", b"x" * 1024)).status_code == 201

        ended = stripe_fake.subscription_event(subscription_id, "deleted")
        assert (await billing.deliver(client, ended)).status_code == 200
        subscription = (
            await client.get("/api/v1/billing/subscription", headers=account.auth)
        ).json()

        assert subscription["tier"] == "free"
        assert subscription["restrictions"] == [
            {
                "kind": "batch_agents",
                "detail": "1 of your 3 batch agents is disabled: the free plan allows 2 enabled;"
                " upgrade to enable more",
            },
            {
                "kind": "storage",
                "detail": "Storage is read-only: 1 KiB stored, more than the free plan's 0 bytes;"
                " nothing was deleted, and deleting some makes it writable again",
            },
        ]
