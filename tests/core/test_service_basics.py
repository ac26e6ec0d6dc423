"""Health, the error shape, request ids, request logs and API docs."""

from __future__ import annotations

import io
import json
import logging

import asyncpg
import httpx
import pytest
from fastapi import FastAPI

from app.core.logging import (
    JsonFormatter,
    RequestIdFilter,
    SecretRedactionFilter,
    request_id_var,
)
from tests.e2e.server_process import free_port


async def test_health_reports_ok_with_the_version(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/v1/health")

    assert response.status_code == 200
    assert response.json() == {
        "status": "ok",
        "version": "0.1.0",
        "database": "ok",
        "llm": "not_configured",
        "embeddings": "not_configured",
    }


async def test_health_is_degraded_when_the_database_does_not_answer(
    client_without_database: httpx.AsyncClient,
) -> None:
    response = await client_without_database.get("/api/v1/health")

    assert response.status_code == 503
    assert response.json() == {
        "status": "degraded",
        "version": "0.1.0",
        "database": "unavailable",
        "llm": "not_configured",
        "embeddings": "not_configured",
    }


async def test_a_database_outage_on_a_route_is_503_with_retry_after(
    client_without_database: httpx.AsyncClient,
) -> None:
    response = await client_without_database.post(
        "/api/v1/auth/login", json={"email": "ada@example.com", "password": "whatever1"}
    )

    assert response.status_code == 503
    assert response.json() == {"detail": "The database is unavailable; try again shortly"}
    assert int(response.headers["Retry-After"]) >= 1
    assert "x-request-id" in response.headers


async def test_unknown_route_uses_the_error_shape(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/v1/nothing-here")

    assert response.status_code == 404
    assert response.json() == {"detail": "Not Found"}


async def test_unexpected_error_hides_its_details(app: FastAPI, client: httpx.AsyncClient) -> None:
    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("secret internals /etc/passwd")

    response = await client.get("/boom")

    assert response.status_code == 500
    assert response.json() == {"detail": "Internal server error"}
    assert "secret internals" not in response.text


async def test_request_id_is_echoed_or_generated(client: httpx.AsyncClient) -> None:
    given = await client.get("/api/v1/health", headers={"X-Request-ID": "desk-42.a"})
    generated = await client.get("/api/v1/health")
    unsafe = await client.get("/api/v1/health", headers={"X-Request-ID": "bad id\twith tab"})

    assert given.headers["x-request-id"] == "desk-42.a"
    assert len(generated.headers["x-request-id"]) == 32
    assert unsafe.headers["x-request-id"] != "bad id\twith tab"


async def test_one_json_log_line_per_request_without_secrets(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    password = "very secret passphrase"
    registered = await client.post(
        "/api/v1/auth/register",
        json={"email": "ada@example.com", "password": password},
        headers={"X-Request-ID": "req-1"},
    )
    tokens = registered.json()
    rotated = await client.post(
        "/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]}
    )
    await client.get(
        "/api/v1/auth/me?token=" + tokens["access_token"],
        headers={"Authorization": "Bearer " + rotated.json()["access_token"]},
    )

    # httpx's own lines are the test client's, not the server's.
    server_records = [r for r in caplog.records if not r.name.startswith("httpx")]
    lines = [JsonFormatter().format(record) for record in server_records]
    requests = [json.loads(line) for line in lines if json.loads(line)["message"] == "request"]
    assert [(r["method"], r["path"], r["status"]) for r in requests] == [
        ("POST", "/api/v1/auth/register", 201),
        ("POST", "/api/v1/auth/refresh", 200),
        ("GET", "/api/v1/auth/me", 200),
    ]
    assert requests[0]["request_id"] == "req-1"
    assert all(isinstance(r["duration_ms"], float) for r in requests)
    everything = "\n".join(lines)
    for secret in (
        password,
        tokens["access_token"],
        tokens["refresh_token"],
        rotated.json()["access_token"],
        rotated.json()["refresh_token"],
    ):
        assert secret not in everything


async def test_cors_allows_the_desktop_app_and_local_dev_only(client: httpx.AsyncClient) -> None:
    async def preflight(origin: str) -> httpx.Response:
        return await client.options(
            "/api/v1/auth/login",
            headers={"Origin": origin, "Access-Control-Request-Method": "POST"},
        )

    for allowed in ("app://adiuva", "http://localhost:5173", "http://127.0.0.1:3000"):
        response = await preflight(allowed)
        assert response.headers.get("access-control-allow-origin") == allowed
    refused = await preflight("https://evil.example")
    assert "access-control-allow-origin" not in refused.headers


async def test_openapi_and_swagger_ui_are_served(client: httpx.AsyncClient) -> None:
    schema = (await client.get("/openapi.json")).json()
    docs = await client.get("/docs")

    assert "/api/v1/auth/register" in schema["paths"]
    assert "/api/v1/health" in schema["paths"]
    assert docs.status_code == 200
    assert "swagger" in docs.text.lower()


def test_log_lines_written_during_a_request_carry_its_id() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RequestIdFilter())
    log = logging.getLogger("tests.request_id")
    log.addHandler(handler)
    log.propagate = False
    token = request_id_var.set("req-7")
    try:
        log.warning("inside", extra={"user_id": "u1"})
    finally:
        request_id_var.reset(token)
        log.removeHandler(handler)
    log.warning("outside")

    [line] = stream.getvalue().splitlines()
    assert json.loads(line) | {"ts": None} == {
        "ts": None,
        "level": "WARNING",
        "logger": "tests.request_id",
        "message": "inside",
        "user_id": "u1",
        "request_id": "req-7",
    }


@pytest.mark.parametrize(
    ("message", "args"),
    [
        ('%s - "WebSocket %s" [accepted]', ("127.0.0.1:5", "/api/v1/ws/device?token=eyJ.abc.def")),
        ("header Authorization: Bearer eyJ.abc.def", ()),
        ("refresh_token=eyJ.abc.def&x=1", ()),
    ],
)
def test_tokens_in_library_log_lines_are_redacted(message: str, args: tuple[str, ...]) -> None:
    record = logging.LogRecord("uvicorn.error", logging.INFO, "", 0, message, args, None)

    SecretRedactionFilter().filter(record)

    assert "eyJ.abc.def" not in record.getMessage()
    assert "[redacted]" in record.getMessage()


async def test_a_database_outage_wrapped_in_another_error_is_still_503(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    @app.get("/wrapped")
    async def wrapped() -> None:
        try:
            await asyncpg.connect(f"postgresql://nobody@127.0.0.1:{free_port()}/none")
        except OSError as exc:  # what a task group raises when one of its tasks failed
            raise ExceptionGroup("work failed", [exc]) from None

    response = await client.get("/wrapped")

    assert response.status_code == 503
    assert response.json() == {"detail": "The database is unavailable; try again shortly"}
    assert int(response.headers["Retry-After"]) >= 1
