"""The OpenAPI document tells the truth: Schemathesis finds no 5xx and no undeclared answer.

The real server runs on loopback with a scripted model behind chat and
embeddings, the fake Stripe behind billing, and the OAuth providers configured
as an operator would (their token endpoints on a closed loopback port: a
generated request never gets as far as a real state), so every route can
answer 200 and a 5xx is never expected. Rate limits are raised out of the way:
a 429 for valid data would be a refusal Schemathesis cannot tell from a bug.
Schemathesis (its CLI, settings in `schemathesis.toml` beside this file)
generates requests from the document, signed in as a registered account,
and checks each answer against what the document declares.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from pathlib import Path

import httpx

from app.core.settings import Settings
from app.main import create_app
from tests.billing.fake_stripe import billing_settings, fake_stripe
from tests.e2e.live_server import serve
from tests.llm.scripted_openai import ChatRequest, scripted_llm

CONFIG = Path(__file__).with_name("schemathesis.toml")
RUN_TIMEOUT_S = 300
CLOSED_PORT_URL = "http://127.0.0.1:9/token"  # discard: nothing listens


def _model_answer(request: ChatRequest) -> str:
    return "Noted."


async def _access_token(base_url: str) -> str:
    async with httpx.AsyncClient(base_url=base_url) as http:
        response = await http.post(
            "/api/v1/auth/register",
            json={"email": "schemathesis@example.com", "password": "a long passphrase"},
        )
    assert response.status_code == 201, response.text
    return str(response.json()["access_token"])


async def _schemathesis(base_url: str, token: str, workdir: Path) -> tuple[int, str]:
    """Run Schemathesis against `base_url`; its exit code and report."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "schemathesis.cli",
        "--no-color",
        "--config-file",
        str(CONFIG),
        "run",
        f"{base_url}/openapi.json",
        "--header",
        f"Authorization: Bearer {token}",
        cwd=workdir,  # its caches and reports stay out of the work tree
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(process.communicate(), RUN_TIMEOUT_S)
    assert process.returncode is not None
    return process.returncode, output.decode(errors="replace")


async def test_every_answer_is_declared_and_none_is_a_server_error(
    make_settings: Callable[..., Settings], database_url: str, tmp_path: Path
) -> None:
    async with scripted_llm(_model_answer) as llm, fake_stripe() as stripe:
        settings = make_settings(
            database_url=database_url,
            llm_model="openai/scripted",
            llm_api_base=llm.api_base,
            llm_api_key="test-key",
            llm_max_retries=0,
            embedding_model="openai/text-embedding-3-small",
            embedding_api_base=llm.api_base,
            embedding_api_key="test-key",
            oauth_redirect_base="https://adiuva.example",
            google_client_id="client-id",
            google_client_secret="client-secret",
            google_token_url=CLOSED_PORT_URL,
            microsoft_client_id="client-id",
            microsoft_client_secret="client-secret",
            microsoft_token_url=CLOSED_PORT_URL,
            rate_limit_free=1_000_000,
            rate_limit_anonymous=1_000_000,
            login_max_failures=1_000_000,
            **billing_settings(stripe),
        )
        async with serve(create_app(settings), settings) as base_url:
            token = await _access_token(base_url)
            exit_code, report = await _schemathesis(base_url, token, tmp_path)

    assert exit_code == 0, report
