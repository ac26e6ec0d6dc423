"""Request bodies over their route's limit get 413 before the server reads them (issue 8)."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from app.core.body_limit import (
    AUTH_BODY_BYTES,
    RECORD_BODY_BYTES,
    ROUTE_BODY_LIMITS,
    VECTORS_UPSERT_BODY_BYTES,
)
from app.core.settings import Settings
from app.main import create_app
from app.storage.schemas import RECORD_MAX_BYTES
from tests.e2e.live_server import serve

LOGIN = "/api/v1/auth/login"
FIFTY_MB = 50 * 1024 * 1024
CHUNK = 4 * 1024
PASSWORD = "a long passphrase"


class CountingBody:
    """An endless-looking request body that counts the chunks the server pulled."""

    def __init__(self, total: int = FIFTY_MB, chunk: int = CHUNK) -> None:
        self.total = total
        self.chunk = chunk
        self.pulled = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for _ in range(self.total // self.chunk):
            self.pulled += 1
            yield b" " * self.chunk

    @property
    def drained(self) -> bool:
        return self.pulled * self.chunk >= self.total


def refused_detail(limit: int) -> dict[str, str]:
    return {"detail": f"Request body is limited to {limit} bytes on this route"}


async def access_token(client: httpx.AsyncClient) -> str:
    response = await client.post(
        "/api/v1/auth/register", json={"email": "ada@example.com", "password": PASSWORD}
    )
    assert response.status_code == 201, response.text
    return str(response.json()["access_token"])


@pytest.mark.parametrize(
    "headers",
    [{}, {"Content-Length": "10"}],
    ids=["chunked", "content-length-lies"],
)
async def test_a_streamed_body_is_cut_off_once_it_passes_the_limit(
    client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    body = CountingBody()

    response = await client.post(
        LOGIN, content=body, headers={"Content-Type": "application/json", **headers}
    )

    assert response.status_code == 413
    assert response.json() == refused_detail(AUTH_BODY_BYTES)
    assert response.headers["connection"] == "close"
    # Exactly the chunks that carried it past the limit, nothing more.
    assert body.pulled == AUTH_BODY_BYTES // CHUNK + 1


async def test_a_content_length_over_the_limit_is_refused_before_any_byte_is_read(
    client: httpx.AsyncClient,
) -> None:
    body = CountingBody()

    response = await client.post(
        LOGIN,
        content=body,
        headers={"Content-Type": "application/json", "Content-Length": str(FIFTY_MB)},
    )

    assert response.status_code == 413
    assert response.json() == refused_detail(AUTH_BODY_BYTES)
    assert body.pulled == 0


@pytest.fixture
async def base_url(settings: Settings) -> AsyncIterator[str]:
    """The real server on a loopback port."""
    async with serve(create_app(settings), settings) as url:
        yield url


async def test_a_fifty_megabyte_upload_over_a_real_socket_is_not_read_to_the_end(
    base_url: str,
) -> None:
    body = CountingBody(chunk=64 * 1024)

    async with httpx.AsyncClient(base_url=base_url, timeout=30) as http:
        try:
            response: httpx.Response | None = await http.post(
                LOGIN, content=body, headers={"Content-Type": "application/json"}
            )
        except httpx.TransportError:
            # The server closed the connection while the client was still sending;
            # whether the client read the 413 first is up to the two TCP stacks.
            response = None

    assert not body.drained
    if response is not None:
        assert response.status_code == 413


async def test_over_a_real_socket_the_answer_is_413_and_the_connection_is_closed(
    base_url: str,
) -> None:
    url = httpx.URL(base_url)
    chunk = b" " * CHUNK
    reader, writer = await asyncio.open_connection(url.host, url.port)
    writer.write(
        f"POST {LOGIN} HTTP/1.1\r\nHost: {url.host}\r\nContent-Type: application/json\r\n"
        "Transfer-Encoding: chunked\r\n\r\n".encode()
    )
    # Past the limit, but never the final empty chunk: the server must not wait for it.
    for _ in range(AUTH_BODY_BYTES // CHUNK + 1):
        writer.write(f"{CHUNK:x}\r\n".encode() + chunk + b"\r\n")
    await writer.drain()
    async with asyncio.timeout(10):  # a server that kept waiting for the body hangs here
        answer = await reader.read()  # everything until the server closes
    writer.close()

    head, _, content = answer.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode().split("\r\n")
    assert status_line.startswith("HTTP/1.1 413 ")
    assert "connection: close" in (line.lower() for line in header_lines)
    assert json.loads(content) == refused_detail(AUTH_BODY_BYTES)


async def test_a_context_over_its_bound_is_refused_with_a_detail_naming_it(
    client: httpx.AsyncClient,
) -> None:
    token = await access_token(client)

    response = await client.post(
        "/api/v1/chat",
        json={"message": "hello", "context": {"page": "x" * (16 * 1024)}},
        headers={"Authorization": f"Bearer {token}"},
    )

    assert response.status_code == 422
    [error] = response.json()["detail"]
    assert error["loc"] == ["body", "context"]
    assert "context is limited to 16384 bytes of JSON" in error["msg"]


async def test_a_context_holding_a_lone_surrogate_is_refused_not_a_model_failure(
    client: httpx.AsyncClient,
) -> None:
    # No encoder takes it: sent on to the model, it failed as "did not answer" (503).
    token = await access_token(client)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}

    response = await client.post(
        "/api/v1/chat",
        content=b'{"message": "hello", "context": {"page": ["\\ud800"]}}',
        headers=headers,
    )

    assert response.status_code == 422
    [error] = response.json()["detail"]
    assert error["loc"] == ["body", "context"]
    assert error["msg"].endswith(
        "text that is not valid Unicode (a lone UTF-16 surrogate) cannot be sent on"
    )


def nested(depth: int) -> bytes:
    """A chat body whose context nests `depth` objects deep, written out by hand."""
    return b'{"message": "hi", "context": ' + b'{"a":' * depth + b"1" + b"}" * depth + b"}"


async def test_a_context_nested_too_deep_is_refused_never_a_server_error(
    client: httpx.AsyncClient,
) -> None:
    token = await access_token(client)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}

    # 33 levels is just past the bound; near 1,000 the JSON parser itself gives up
    # (400). In between, measuring the context once overflowed the stack (500).
    answers = {
        depth: await client.post("/api/v1/chat", content=nested(depth), headers=headers)
        for depth in [33, *range(850, 1001, 5)]
    }

    assert answers[33].status_code == 422
    assert "context is limited to 32 levels of nesting" in answers[33].text
    assert {
        depth: a.status_code for depth, a in answers.items() if a.status_code not in (400, 422)
    } == {}


def largest_valid_bodies() -> list[Any]:
    """Each route's largest valid body, every character JSON-escaped (six bytes each)."""
    wide = "\u00e9"  # é: escaped as \u00e9
    return [
        pytest.param(
            LOGIN,
            {"email": "ada@example.com", "password": wide * 1024},
            401,  # no such account, but read and checked
            id="login",
        ),
        pytest.param(
            "/api/v1/chat",
            {"message": wide * 32_000, "context": {"page": wide * 8_000}},
            503,  # no model in these tests: read, validated, then refused
            id="chat",
        ),
        pytest.param(
            "/api/v1/storage/vectors/embed",
            {"text": wide * 16_000},
            503,  # no embedding model in these tests
            id="embed",
        ),
        pytest.param(
            "/api/v1/storage/vectors/search",
            {"query_vector": [-1.2345678901234567e-300] * 16_000, "top_k": 100},
            200,  # nothing stored yet: no results
            id="vectors-search",
        ),
        pytest.param(
            "/api/v1/storage/vectors",
            {"ids": ["i" * 128] * 1000},
            200,
            id="vectors-delete",
        ),
        pytest.param(
            "/api/v1/agents/cloud",
            {
                "provider": "teams",
                "name": wide * 100,
                "encrypted_token": "A" * 1000,
                "filter_config": {
                    "chats": [wide * 200] * 20,
                    "channels": [f"{wide * 99}/{wide * 100}"] * 20,
                    "date_range": {"start": "2026-01-01", "end": "2026-12-31"},
                },
                "data_types": ["tasks", "notes", "timelines", "projects"],
                "prompt_template": wide * 4000,
                "schedule_cron": "0 9 * * *",
                "timezone": "Europe/Berlin",
            },
            400,  # read and validated; the token names no connection of this account
            id="cloud-agent",
        ),
    ]


@pytest.mark.parametrize(("path", "body", "status"), largest_valid_bodies())
async def test_the_largest_valid_body_of_a_route_fits_its_limit(
    client: httpx.AsyncClient, path: str, body: dict[str, Any], status: int
) -> None:
    token = await access_token(client)
    content = json.dumps(body, ensure_ascii=True).encode()

    response = await client.request(
        "DELETE" if path.endswith("/vectors") else "POST",
        path,
        content=content,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )

    assert response.status_code == status, response.text


async def test_the_largest_record_fits_with_every_slash_escaped(
    client: httpx.AsyncClient,
) -> None:
    """A record's blob of RECORD_MAX_BYTES whose base64 is all `/`, each sent as `\\/`."""
    token = await access_token(client)
    blob = b"\xff" * RECORD_MAX_BYTES  # base64: "////…"
    body = json.dumps(
        {"table": "tasks", "blob": base64.b64encode(blob).decode(), "checksum": "0" * 64}
    )
    content = body.replace("/", "\\/").encode()
    assert len(content) > 2 * RECORD_MAX_BYTES

    response = await client.post(
        "/api/v1/storage/records",
        content=content,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )

    # Read and parsed whole; refused only because the free plan has no storage.
    assert response.status_code == 403, response.text


@pytest.mark.parametrize(
    ("method", "path", "limit"),
    [
        ("POST", "/storage/records", RECORD_BODY_BYTES),
        ("PUT", "/storage/records/2b1c2b4e-6f0e-4a8e-9d55-3a3f1f1f1f1f", RECORD_BODY_BYTES),
        ("POST", "/storage/vectors/upsert", VECTORS_UPSERT_BODY_BYTES),
        ("POST", "/storage/vectors/search", 1024 * 1024),
        ("DELETE", "/storage/vectors", 256 * 1024),
        ("PUT", "/backup", 1024**3),
    ],
)
async def test_a_body_past_a_storage_routes_limit_is_refused_unread(
    client: httpx.AsyncClient, method: str, path: str, limit: int
) -> None:
    token = await access_token(client)
    body = CountingBody(total=limit + 1024 * 1024)

    declared = await client.request(
        method,
        f"/api/v1{path}",
        content=body,
        headers={"Authorization": f"Bearer {token}", "Content-Length": str(limit + 1)},
    )

    assert declared.status_code == 413
    assert declared.json() == refused_detail(limit)
    assert body.pulled == 0


async def test_an_ordinary_login_still_works(client: httpx.AsyncClient) -> None:
    await access_token(client)

    response = await client.post(LOGIN, json={"email": "ada@example.com", "password": PASSWORD})

    assert response.status_code == 200
    assert response.json()["token_type"] == "bearer"


async def test_routes_without_a_limit_of_their_own_take_http_max_body_bytes(
    make_settings: Callable[..., Settings], database_url: str
) -> None:
    settings = make_settings(database_url=database_url, http_max_body_bytes=2048)
    assert "/memory" not in ROUTE_BODY_LIMITS
    app = create_app(settings)

    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http,
    ):
        response = await http.request("DELETE", "/api/v1/memory", content=b" " * 2049)

    assert response.status_code == 413
    assert response.json() == refused_detail(2048)
