"""Schedules and time zones over the agents routes: what is refused, said without echoing it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from app.core.settings import Settings
from tests.batch.provider_fakes import ProviderFakes, connect, provider_settings
from tests.batch.test_agents_api import AGENTS, agent_body, sign_up
from tests.batch.test_schedule import STILL_ACCEPTED, random_or_hashed

CLOUD_AGENTS = "/api/v1/agents/cloud"
UNKNOWN_ZONE = "unknown IANA time zone (expected a name such as Europe/Berlin)"


@pytest.fixture
def settings(
    make_settings: Callable[..., Settings], database_url: str, providers: ProviderFakes
) -> Settings:
    # Each test makes more requests than the free plan's 20 a minute.
    return make_settings(
        database_url=database_url,
        rate_limit_free=1000,
        **provider_settings(providers.base_url),
    )


def cloud_body(token: str, **fields: Any) -> dict[str, Any]:
    return {
        "provider": "gmail",
        "name": "Mail",
        "encrypted_token": token,
        "schedule_cron": "0 9 * * *",
        **fields,
    }


async def refused_everywhere(
    client: httpx.AsyncClient, field: str, value: str, message: str
) -> None:
    """`field: value` sent to the four routes that take it (local and cloud, create and
    update) is refused by each with exactly `message`, never quoting `value`, and
    changes nothing."""
    headers, _ = await sign_up(client)
    token = await connect(client, headers, "gmail")
    local = (await client.post(AGENTS, json=agent_body(), headers=headers)).json()
    cloud = (await client.post(CLOUD_AGENTS, json=cloud_body(token), headers=headers)).json()

    answers = {
        ("body", field): [
            await client.post(AGENTS, json=agent_body(**{field: value}), headers=headers),
            await client.put(f"{AGENTS}/{local['id']}", json={field: value}, headers=headers),
            await client.put(f"{CLOUD_AGENTS}/{cloud['id']}", json={field: value}, headers=headers),
        ],
        # The create body is a union tagged by provider, and the tag is in the place.
        ("body", "gmail", field): [
            await client.post(
                CLOUD_AGENTS, json=cloud_body(token, **{field: value}), headers=headers
            )
        ],
    }

    for loc, responses in answers.items():
        for response in responses:
            assert response.status_code == 422, response.text
            assert response.json() == {
                "detail": [
                    {"loc": list(loc), "msg": f"Value error, {message}", "type": "value_error"}
                ]
            }
            assert value not in response.text
    assert (await client.get(AGENTS, headers=headers)).json() == [local]
    assert (await client.get(CLOUD_AGENTS, headers=headers)).json() == [cloud]


@pytest.mark.parametrize(
    ("expression", "field", "values"),
    [
        ("R * * * *", "minute", "0-59"),
        ("R(0-59) * * * *", "minute", "0-59"),
        ("H 9 * * *", "minute", "0-59"),
        ("0 9 * * H", "day-of-week", "0-7 or SUN-SAT"),
    ],
)
async def test_random_and_hashed_schedules_are_refused_on_every_route(
    client: httpx.AsyncClient, expression: str, field: str, values: str
) -> None:
    await refused_everywhere(client, "schedule_cron", expression, random_or_hashed(field, values))


async def test_an_invalid_schedule_is_refused_without_echoing_it(
    client: httpx.AsyncClient,
) -> None:
    await refused_everywhere(
        client,
        "schedule_cron",
        "0 0 * * 5l",
        "not a valid cron expression: the day-of-week field takes 0-7 or SUN-SAT as one"
        " value, a range a-b, a list a,b or a step */n",
    )


async def test_an_unknown_time_zone_is_refused_without_echoing_it(
    client: httpx.AsyncClient,
) -> None:
    await refused_everywhere(client, "timezone", "my-secret-value", UNKNOWN_ZONE)


async def test_schedules_with_names_and_day_syntax_are_still_accepted(
    client: httpx.AsyncClient,
) -> None:
    headers, _ = await sign_up(client)
    token = await connect(client, headers, "gmail")

    for expression in STILL_ACCEPTED:
        # Disabled, so the plan's limit on enabled agents does not stop the table.
        local = await client.post(
            AGENTS, json=agent_body(schedule_cron=expression, enabled=False), headers=headers
        )
        cloud = await client.post(
            CLOUD_AGENTS,
            json=cloud_body(token, schedule_cron=expression, enabled=False),
            headers=headers,
        )

        assert local.status_code == 201, (expression, local.text)
        assert cloud.status_code == 201, (expression, cloud.text)
        assert local.json()["schedule_cron"] == cloud.json()["schedule_cron"] == expression
