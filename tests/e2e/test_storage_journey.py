"""A new user, as they would go: refused on free, pays, backs up 100 MB, restores it,
and is refused at the quota.

The real server on loopback, billing pointed at the fake Stripe, blobs on the
local disk; every request crosses a real socket.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from tests.billing.fake_stripe import FakeStripe, billing_settings, sign
from tests.e2e.conftest import Live

MB = 1000 * 1000
GIB = 1024**3
BACKUP_SIZE = 100 * MB
CHUNK = 1024 * 1024
FREE_REFUSAL = "Your plan (free) does not include cloud storage and backup; upgrade to use it"


@pytest.fixture
def live_settings(stripe_fake: FakeStripe) -> dict[str, Any]:
    # Backups up to 6 GiB may be sent, so it is the quota (5 GiB on pro) that refuses one.
    return {**billing_settings(stripe_fake), "backup_max_bytes": 6 * GIB}


class Snapshot:
    """100 MB of ciphertext-like bytes, made on the fly, and its SHA-256."""

    def __init__(self) -> None:
        self.block = os.urandom(CHUNK)
        self.checksum = hashlib.sha256(b"".join(self.chunks())).hexdigest()

    def chunks(self) -> Iterator[bytes]:
        for start in range(0, BACKUP_SIZE, CHUNK):
            yield (start.to_bytes(8, "big") + self.block[8:])[: min(CHUNK, BACKUP_SIZE - start)]

    async def body(self) -> AsyncIterator[bytes]:
        for chunk in self.chunks():
            yield chunk


def backup_headers(checksum: str, timestamp: int = 1_763_000_000_000) -> dict[str, str]:
    return {
        "X-Backup-Version": "2",
        "X-Backup-Timestamp": str(timestamp),
        "X-Backup-Checksum": checksum,
    }


async def raw_put_backup(live: Live, token: str, content_length: int) -> tuple[int, Any]:
    """A PUT /backup that announces `content_length` bytes and sends none: the answer."""
    url = httpx.URL(live.base_url)
    reader, writer = await asyncio.open_connection(url.host, url.port)
    head = {
        "Host": f"{url.host}:{url.port}",
        "Authorization": f"Bearer {token}",
        "Content-Length": str(content_length),
        **backup_headers("0" * 64),
    }
    writer.write(
        (
            "PUT /api/v1/backup HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in head.items())
        ).encode()
        + b"\r\n"
    )
    await writer.drain()
    async with asyncio.timeout(10):  # a server waiting for the body first would hang here
        status_line = await reader.readline()
        headers = {}
        while (line := await reader.readline()) != b"\r\n":
            name, _, value = line.decode().partition(":")
            headers[name.strip().lower()] = value.strip()
        body = await reader.readexactly(int(headers["content-length"]))
    writer.close()
    return int(status_line.split()[1]), json.loads(body)


async def test_a_pro_user_backs_up_100_mb_restores_it_and_is_refused_at_the_quota(
    live: Live, stripe_fake: FakeStripe
) -> None:
    account = await live.account()
    auth = {"Authorization": f"Bearer {account.token}"}
    snapshot = Snapshot()
    async with httpx.AsyncClient(base_url=live.base_url, headers=auth, timeout=120) as http:
        # On the free plan: a clear refusal, naming the plan.
        free = await http.put(
            "/api/v1/backup", content=b"x", headers=backup_headers(hashlib.sha256(b"x").hexdigest())
        )
        assert free.status_code == 403
        assert free.json() == {"detail": FREE_REFUSAL}

        # The user pays for pro on Stripe's page; Stripe tells the server.
        checkout = await http.post("/api/v1/billing/checkout", json={"tier": "pro"})
        session_id = checkout.json()["checkout_url"].rsplit("/", 1)[1]
        payload = json.dumps(stripe_fake.checkout_completed(session_id))
        delivered = await http.post(
            "/api/v1/billing/webhook",
            content=payload,
            headers={"Content-Type": "application/json", "Stripe-Signature": sign(payload)},
        )
        assert delivered.status_code == 200, delivered.text

        stored = await http.put(
            "/api/v1/backup", content=snapshot.body(), headers=backup_headers(snapshot.checksum)
        )
        assert stored.status_code == 200, stored.text
        backup_id = stored.json()["id"]

        history = await http.get("/api/v1/backup/history")
        assert [(b["id"], b["size_bytes"], b["checksum"]) for b in history.json()] == [
            (backup_id, BACKUP_SIZE, snapshot.checksum)
        ]

        digest, received = hashlib.sha256(), 0
        async with http.stream("GET", "/api/v1/backup") as restored:
            assert restored.status_code == 200
            assert restored.headers["x-backup-checksum"] == snapshot.checksum
            async for chunk in restored.aiter_raw():
                digest.update(chunk)
                received += len(chunk)
        assert (received, digest.hexdigest()) == (BACKUP_SIZE, snapshot.checksum)

        usage = (await http.get("/api/v1/storage/usage")).json()
        assert usage == {"used_bytes": BACKUP_SIZE, "quota_bytes": 5 * GIB}

    # Past the quota: refused from its Content-Length, before a byte of the body is read.
    status, body = await raw_put_backup(live, account.token, 5 * GIB - BACKUP_SIZE + 1)
    assert status == 403
    assert body["detail"].startswith("Storage quota exceeded: the pro plan allows 5 GiB;")
