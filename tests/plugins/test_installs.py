"""Installs, signed downloads and ratings; counts exact under concurrent requests."""

from __future__ import annotations

import asyncio
import logging
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from fastapi import FastAPI

from app.core.settings import Settings
from app.plugins.downloads import sign_download
from tests.billing.conftest import Account
from tests.plugins.conftest import (
    PLUGINS,
    Market,
    manifest,
    package,
    rows,
    set_tier,
    submit,
    user_on,
)


async def install(client: httpx.AsyncClient, account: Account, plugin_id: str) -> httpx.Response:
    return await client.post(f"{PLUGINS}/{plugin_id}/install", headers=account.auth)


async def counts(client: httpx.AsyncClient, account: Account, plugin_id: str) -> tuple[int, ...]:
    body = (await client.get(f"{PLUGINS}/{plugin_id}", headers=account.auth)).json()
    return body["install_count"], body["rating_count"]


async def test_installing_twice_is_idempotent_and_the_signed_link_serves_the_package(
    app: FastAPI, client: httpx.AsyncClient, market: Market, power: Account
) -> None:
    data = package({"main.js": b"hello marketplace"})
    plugin_id = await market.publish(data)

    first = await install(client, power, plugin_id)
    second = await install(client, power, plugin_id)
    url = first.json()["download_url"]
    downloaded = await client.get(url)  # no bearer token: the link is the permission
    listed = await client.get(f"{PLUGINS}/installed", headers=power.auth)

    assert first.status_code == second.status_code == 200
    assert first.json()["ok"] is True
    assert url.startswith(f"http://testserver{PLUGINS}/download/")
    expires = datetime.fromisoformat(first.json()["expires_at"])
    assert timedelta(minutes=14) < expires - datetime.now(UTC) <= timedelta(minutes=15)
    assert downloaded.status_code == 200
    assert downloaded.content == data
    assert downloaded.headers["content-type"] == "application/zip"
    assert await counts(client, power, plugin_id) == (1, 0)
    assert [item["plugin"]["id"] for item in listed.json()] == [plugin_id]


async def test_the_download_token_never_reaches_the_log(
    app: FastAPI,
    client: httpx.AsyncClient,
    market: Market,
    power: Account,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    plugin_id = await market.publish(package({"main.js": b"quiet"}))
    url = (await install(client, power, plugin_id)).json()["download_url"]
    token = url.rsplit("/", 1)[1]

    downloaded = await client.get(url)
    tampered = await client.get(url[:-2] + ("AA" if not url.endswith("AA") else "BB"))

    assert downloaded.status_code == 200
    assert tampered.status_code == 403
    logged = [str(vars(record)) for record in caplog.records]
    assert not [line for line in logged if token[:-2] in line]
    paths = [getattr(r, "path", None) for r in caplog.records if r.getMessage() == "request"]
    assert paths.count(f"{PLUGINS}/download/REDACTED") == 2


async def test_an_expired_or_tampered_link_is_refused_clearly(
    app: FastAPI, client: httpx.AsyncClient, market: Market, power: Account, settings: Settings
) -> None:
    plugin_id = await market.publish()
    url = (await install(client, power, plugin_id)).json()["download_url"]
    token = url.rsplit("/", 1)[1]
    (version_id,) = (await rows(app, "SELECT current_version_id FROM plugins"))[0]
    expired, _ = sign_download(
        secret=settings.jwt_secret.get_secret_value(),  # type: ignore[union-attr]
        user_id=power.user_id,
        version_id=version_id,
        now=datetime.now(UTC) - timedelta(minutes=16),
    )
    header, claims, signature = token.split(".")
    flipped = signature[:-2] + ("A" if signature[-2] != "A" else "B") + signature[-1]
    forged, _ = sign_download(
        secret="another server's secret, long enough to sign",
        user_id=power.user_id,
        version_id=version_id,
        now=datetime.now(UTC),
    )

    late = await client.get(f"{PLUGINS}/download/{expired}")
    tampered = await client.get(f"{PLUGINS}/download/{header}.{claims}.{flipped}")
    foreign = await client.get(f"{PLUGINS}/download/{forged}")
    garbage = await client.get(f"{PLUGINS}/download/not-a-token")

    assert late.status_code == 410
    assert late.json() == {"detail": "This download link has expired; install again for a new one"}
    assert tampered.status_code == foreign.status_code == 403
    assert tampered.json() == {"detail": "This download link is not valid"}
    assert garbage.status_code == 422


async def test_after_uninstalling_the_link_stops_working_and_counts_follow(
    app: FastAPI, client: httpx.AsyncClient, market: Market, power: Account
) -> None:
    plugin_id = await market.publish()
    url = (await install(client, power, plugin_id)).json()["download_url"]

    removed = await client.delete(f"{PLUGINS}/{plugin_id}/install", headers=power.auth)
    again = await client.delete(f"{PLUGINS}/{plugin_id}/install", headers=power.auth)
    refused = await client.get(url)

    assert removed.json() == again.json() == {"ok": True}
    assert refused.status_code == 403
    assert await counts(client, power, plugin_id) == (0, 0)
    assert (await client.get(f"{PLUGINS}/installed", headers=power.auth)).json() == []


async def test_a_link_stops_working_once_the_plan_has_no_marketplace(
    app: FastAPI, client: httpx.AsyncClient, market: Market, power: Account
) -> None:
    plugin_id = await market.publish()
    url = (await install(client, power, plugin_id)).json()["download_url"]

    served = await client.get(url)
    await set_tier(app, power, "free")  # what a billing downgrade leaves
    refused = await client.get(url)
    await set_tier(app, power, "team")
    served_again = await client.get(url)

    assert served.status_code == served_again.status_code == 200
    assert refused.status_code == 403
    assert refused.json() == {
        "detail": "Your plan (free) does not include the plugin marketplace; "
        "upgrade to power or team to use it"
    }


async def test_uninstalling_an_unapproved_plugin_is_404_but_to_its_author_and_reviewers(
    app: FastAPI, client: httpx.AsyncClient, market: Market, power: Account
) -> None:
    submitted = await submit(client, market.author, manifest())
    plugin_id = submitted.json()["id"]

    shown = await client.get(f"{PLUGINS}/{plugin_id}", headers=power.auth)
    outsider = await client.delete(f"{PLUGINS}/{plugin_id}/install", headers=power.auth)
    author = await client.delete(f"{PLUGINS}/{plugin_id}/install", headers=market.author.auth)
    reviewer = await client.delete(f"{PLUGINS}/{plugin_id}/install", headers=market.reviewer.auth)

    assert shown.status_code == outsider.status_code == 404
    assert outsider.json() == shown.json() == {"detail": "Plugin not found"}
    assert author.json() == reviewer.json() == {"ok": True}


async def test_another_users_ids_and_unknown_plugins_are_404(
    app: FastAPI, client: httpx.AsyncClient, market: Market, power: Account
) -> None:
    unknown = uuid.uuid4()
    for response in (
        await install(client, power, str(unknown)),
        await client.delete(f"{PLUGINS}/{unknown}/install", headers=power.auth),
        await client.post(f"{PLUGINS}/{unknown}/rating", json={"stars": 3}, headers=power.auth),
        await client.get(f"{PLUGINS}/{unknown}", headers=power.auth),
    ):
        assert response.status_code == 404


async def test_only_installers_rate_once_each_and_rating_again_replaces(
    app: FastAPI, client: httpx.AsyncClient, market: Market, power: Account
) -> None:
    plugin_id = await market.publish()
    outsider = await user_on(app, client, "power")
    await install(client, power, plugin_id)

    refused = await client.post(
        f"{PLUGINS}/{plugin_id}/rating", json={"stars": 1}, headers=outsider.auth
    )
    first = await client.post(
        f"{PLUGINS}/{plugin_id}/rating", json={"stars": 2, "comment": "meh"}, headers=power.auth
    )
    second = await client.post(
        f"{PLUGINS}/{plugin_id}/rating", json={"stars": 5}, headers=power.auth
    )

    assert refused.status_code == 403
    assert refused.json() == {"detail": "Only users who have installed this plugin may rate it"}
    assert first.json()["avg_rating"] == 2.0
    assert second.json() == {
        "plugin_id": plugin_id,
        "stars": 5,
        "comment": None,
        "avg_rating": 5.0,
        "rating_count": 1,
    }
    assert await rows(app, "SELECT stars FROM plugin_ratings") == [(5,)]


@pytest.mark.parametrize(
    "body",
    [{"stars": 0}, {"stars": 6}, {"stars": "5"}, {"stars": 4.5}, {}, {"stars": 3, "x": 1}],
)
async def test_a_rating_out_of_range_or_of_the_wrong_type_is_422(
    app: FastAPI, client: httpx.AsyncClient, market: Market, power: Account, body: object
) -> None:
    plugin_id = await market.publish()
    await install(client, power, plugin_id)

    response = await client.post(f"{PLUGINS}/{plugin_id}/rating", json=body, headers=power.auth)

    assert response.status_code == 422


async def test_concurrent_installs_and_ratings_keep_exact_counts(
    app: FastAPI, client: httpx.AsyncClient, market: Market
) -> None:
    plugin_id = await market.publish()
    users = [await user_on(app, client, "power") for _ in range(12)]

    # Each user installs twice at once, all users at once.
    await asyncio.gather(*(install(client, u, plugin_id) for u in users for _ in range(2)))
    # Each user rates twice at once (1 then their final stars); last write wins per user.
    stars = [(i % 5) + 1 for i in range(len(users))]
    await asyncio.gather(
        *(
            client.post(f"{PLUGINS}/{plugin_id}/rating", json={"stars": s}, headers=u.auth)
            for u, s in zip(users, stars, strict=True)
        ),
        *(
            client.post(f"{PLUGINS}/{plugin_id}/rating", json={"stars": s}, headers=u.auth)
            for u, s in zip(users, stars, strict=True)
        ),
    )
    # Half uninstall while the other half install again.
    await asyncio.gather(
        *(client.delete(f"{PLUGINS}/{plugin_id}/install", headers=u.auth) for u in users[:6]),
        *(install(client, u, plugin_id) for u in users[6:]),
    )

    body = (await client.get(f"{PLUGINS}/{plugin_id}", headers=users[0].auth)).json()
    assert body["install_count"] == 6
    assert body["rating_count"] == len(users)
    assert body["avg_rating"] == round(sum(stars) / len(stars), 2)
    assert await rows(
        app, "SELECT install_count, rating_sum FROM plugins WHERE id = :id", id=uuid.UUID(plugin_id)
    ) == [(6, sum(stars))]
