"""`python -m devclient` chats with a (scripted) server and reports by exit code."""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from devclient import cli
from devclient.client import AuthError
from devclient.store import LocalStore
from tests.devclient.scripted_peer import TIMEOUT_S, PeerConnection, ScriptedPeer, scripted_peer
from tests.e2e.server_process import free_port

EMAIL = "me@example.com"
PASSWORD = "pw-12345678"


@pytest.fixture
async def peer() -> AsyncIterator[ScriptedPeer]:
    async with scripted_peer() as listening:
        yield listening


@pytest.fixture
def logins(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str, str]]:
    """Replace the HTTP login with one that records its arguments and returns a token."""
    calls: list[tuple[str, str, str]] = []

    async def fake_login(server: str, email: str, password: str) -> dict[str, Any]:
        calls.append((server, email, password))
        return {"access_token": "token-1"}

    monkeypatch.setattr(cli, "login", fake_login)
    return calls


def db_path(tmp_path: Path) -> Path:
    return tmp_path / "workspace.sqlite3"


def device_id_file_content(tmp_path: Path) -> str:
    return Path(f"{db_path(tmp_path)}.device-id").read_text(encoding="utf-8").strip()


def arguments(server: str, tmp_path: Path, *command: str) -> argparse.Namespace:
    return cli.build_parser().parse_args(
        [
            "--server",
            server,
            "--email",
            EMAIL,
            "--db",
            str(db_path(tmp_path)),
            "--timeout",
            "5",
            *command,
        ]
    )


async def start(
    peer: ScriptedPeer, tmp_path: Path, *command: str
) -> tuple[asyncio.Task[int], PeerConnection]:
    """Run the command line against `peer`; return it running and the peer's side, past hello."""
    running = asyncio.create_task(cli.run(arguments(peer.url, tmp_path, *command), PASSWORD))
    connection = await peer.accept()
    hello = await connection.recv()
    assert hello["type"] == "device_hello"
    return running, connection


async def exit_code(running: asyncio.Task[int]) -> int:
    async with asyncio.timeout(TIMEOUT_S):
        return await running


async def test_chat_streams_the_answer_and_reports_tool_calls_and_mutations(
    peer: ScriptedPeer,
    tmp_path: Path,
    logins: list[tuple[str, str, str]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    seed = LocalStore(db_path(tmp_path))
    seed.execute(action="insert", table="tasks", data={"title": "Invoice"})
    seed.close()
    running, connection = await start(peer, tmp_path, "chat", "list my tasks")
    request = await connection.recv()
    assert (request["type"], request["message"]) == ("home_request", "list my tasks")
    request_id = request["request_id"]
    await connection.send({"type": "stream_start", "request_id": request_id})
    await connection.send({"type": "stream_text", "request_id": request_id, "chunk": "You have "})
    await connection.send(
        {
            "type": "tool_call",
            "id": "c1",
            "action": "select",
            "table": "tasks",
            "filters": {"status": "todo"},
            "request_id": request_id,
        }
    )
    assert len((await connection.recv())["rows"]) == 1
    await connection.send({"type": "stream_text", "request_id": request_id, "chunk": "1 task."})
    mutation = {"action": "insert", "table": "notes", "data": {"id": "n1"}}
    await connection.send({"type": "stream_end", "request_id": request_id, "mutations": [mutation]})

    assert await exit_code(running) == cli.EXIT_OK
    out, err = capsys.readouterr()
    assert out == "You have 1 task.\n"
    assert err.splitlines() == [
        "",  # the answer's open line is ended on stderr, not in stdout
        '→ select tasks {"status": "todo"}',
        "← 1 row",
        'mutation: insert notes {"id": "n1"}',
    ]
    assert logins == [(peer.url, EMAIL, PASSWORD)]


async def test_the_device_id_is_kept_next_to_the_database(
    peer: ScriptedPeer, tmp_path: Path, logins: list[tuple[str, str, str]]
) -> None:
    running = asyncio.create_task(cli.run(arguments(peer.url, tmp_path, "serve"), PASSWORD))
    connection = await peer.accept()
    hello = await connection.recv()
    await connection.close(1000, "bye")
    await exit_code(running)
    stored = device_id_file_content(tmp_path)
    assert hello["device_id"] == stored
    assert cli.stored_device_id(str(db_path(tmp_path))) == stored


async def test_error_frames_exit_with_1(
    peer: ScriptedPeer,
    tmp_path: Path,
    logins: list[tuple[str, str, str]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    running, connection = await start(
        peer, tmp_path, "floating", "--scope-type", "task", "--scope-id", "t1", "why?"
    )
    request = await connection.recv()
    assert request["scope"] == {"type": "task", "id": "t1"}
    await connection.send(
        {"type": "error", "code": "rate_limited", "message": "slow down", "retry_after": 12.5}
    )
    for frame in (
        {"type": "floating_domain", "domain": "tasks"},
        {"type": "stream_start"},
        {"type": "error", "code": "internal_error", "message": "boom"},
        {"type": "stream_end", "mutations": []},
    ):
        await connection.send({**frame, "request_id": request["request_id"]})

    assert await exit_code(running) == cli.EXIT_ERROR_FRAMES
    out, err = capsys.readouterr()
    assert out == ""
    assert "domain: tasks" in err
    assert "error: internal_error: boom" in err
    assert "error: rate_limited: slow down (retry after 12.5 s)" in err


async def test_a_request_that_does_not_end_in_time_exits_with_1(
    peer: ScriptedPeer,
    tmp_path: Path,
    logins: list[tuple[str, str, str]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    args = arguments(peer.url, tmp_path, "chat", "hi")
    args.timeout = 0.05
    running = asyncio.create_task(cli.run(args, PASSWORD))
    await peer.accept()
    assert await exit_code(running) == cli.EXIT_ERROR_FRAMES
    assert "did not end within 0.05 s" in capsys.readouterr().err


async def test_a_closed_connection_exits_with_2(
    peer: ScriptedPeer,
    tmp_path: Path,
    logins: list[tuple[str, str, str]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    running, connection = await start(peer, tmp_path, "chat", "hi")
    await connection.recv()
    await connection.close(1008, "Invalid access token")
    assert await exit_code(running) == cli.EXIT_CONNECTION
    assert "connection closed (code 1008: Invalid access token)" in capsys.readouterr().err


async def test_serve_answers_tool_calls_until_the_connection_ends(
    peer: ScriptedPeer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    async def fake_register_or_login(server: str, email: str, password: str) -> dict[str, Any]:
        return {"access_token": "token-1"}

    monkeypatch.setattr(cli, "register_or_login", fake_register_or_login)
    running, connection = await start(peer, tmp_path, "--register", "serve")
    await connection.send(
        {
            "type": "tool_call",
            "id": "c1",
            "action": "insert",
            "table": "tasks",
            "data": {"title": "From a batch run"},
            "run_id": "run-1",
        }
    )
    assert (await connection.recv())["row"]["title"] == "From a batch run"
    await connection.close(4000, "replaced by a newer connection")

    assert await exit_code(running) == cli.EXIT_CONNECTION
    err = capsys.readouterr().err
    assert "answering tool calls until Ctrl-C" in err
    assert '→ insert tasks {"title": "From a batch run"}' in err
    assert "code 4000: replaced by a newer connection" in err


async def test_serve_answers_batch_runs_from_the_agent_folders_only(
    peer: ScriptedPeer,
    tmp_path: Path,
    logins: list[tuple[str, str, str]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    shared, private = tmp_path / "shared", tmp_path / "private"
    for folder in (shared, private):
        folder.mkdir()
        (folder / f"{folder.name}.md").write_text(f"in {folder.name}")
    running, connection = await start(peer, tmp_path, "--agent-folder", str(shared), "serve")
    await connection.send(
        {
            "type": "agent_run",
            "run_id": "run-1",
            "agent_id": "agent-1",
            "config": {"paths": [str(shared), str(private)], "file_extensions": [".md"]},
        }
    )

    data, complete = await connection.recv(), await connection.recv()
    await connection.close(1000, "done")

    assert await exit_code(running) == cli.EXIT_CONNECTION
    assert [(f["name"], f["content"]) for f in data["files"]] == [("shared.md", "in shared")]
    assert complete["errors"] == [f"{private}: not in a folder shared with batch agents"]
    assert f"batch run run-1: reading {shared}, {private}" in capsys.readouterr().err


def test_the_subcommand_comes_after_the_global_options(tmp_path: Path) -> None:
    args = arguments("http://127.0.0.1:1", tmp_path, "--register", "serve")
    assert (args.command, args.register) == ("serve", True)


async def test_a_refused_login_exits_with_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    async def refuse(server: str, email: str, password: str) -> dict[str, Any]:
        raise AuthError("login", 401, "Invalid email or password")

    monkeypatch.setattr(cli, "login", refuse)
    code = await cli.run(arguments("http://127.0.0.1:1", tmp_path, "chat", "hi"), PASSWORD)
    assert code == cli.EXIT_CONNECTION
    assert "login failed: HTTP 401: Invalid email or password" in capsys.readouterr().err


@pytest.mark.integration  # connects to a closed loopback port
def test_main_exits_with_2_when_the_server_is_unreachable(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    server = f"http://127.0.0.1:{free_port()}"
    argv = ["--server", server, "--email", EMAIL, "--password", PASSWORD]
    argv += ["--db", str(db_path(tmp_path)), "chat", "hi"]
    assert cli.main(argv) == cli.EXIT_CONNECTION
    assert f"cannot reach {server}" in capsys.readouterr().err


def test_main_refuses_a_server_that_is_not_an_http_url() -> None:
    with pytest.raises(SystemExit) as usage_error:
        cli.main(["--server", "127.0.0.1:8000", "--email", EMAIL, "chat", "hi"])
    assert usage_error.value.code == 2


def test_the_password_comes_from_the_option_then_the_environment_then_a_prompt(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("getpass.getpass", lambda prompt: "typed")
    monkeypatch.delenv(cli.PASSWORD_ENV, raising=False)
    parse = cli.build_parser().parse_args
    assert cli.resolve_password(parse(["--email", EMAIL, "serve"])) == "typed"
    monkeypatch.setenv(cli.PASSWORD_ENV, "from-env")
    assert cli.resolve_password(parse(["--email", EMAIL, "serve"])) == "from-env"
    assert cli.resolve_password(parse(["--email", EMAIL, "--password", "p", "serve"])) == "p"


@pytest.mark.parametrize(
    ("call", "line"),
    [
        ({"action": "get", "table": "notes", "data": {"id": "n1"}}, 'get notes {"id": "n1"}'),
        (
            {"action": "vector_search", "vector": [0.1, 0.2], "limit": 5},
            "vector_search <2-d vector> limit 5",
        ),
        ({"action": "insert", "data": {"content": "x" * 500}}, None),
    ],
)
def test_describe_call(call: dict[str, Any], line: str | None) -> None:
    described = cli.describe_call(call)
    if line is None:
        assert len(described) < 220
        assert described.endswith("…")
    else:
        assert described == line


@pytest.mark.parametrize(
    ("payload", "line"),
    [
        ({"rows": []}, "0 rows"),
        ({"results": [{"id": "a"}]}, "1 result"),
        ({"row": {"id": "t1"}}, "row t1"),
        ({"row": None}, "no row"),
        ({"deleted": True}, "deleted"),
        ({"ok": True}, "ok"),
        ({"rows": "?"}, '{"rows": "?"}'),
        ({"error": "no tasks row"}, "error: no tasks row"),
    ],
)
def test_describe_result(payload: dict[str, Any], line: str) -> None:
    assert cli.describe_result(payload) == line


def test_python_m_devclient_runs_the_command_line() -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "devclient", "--help"],
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert completed.returncode == 0
    assert "chat" in completed.stdout
    assert "serve" in completed.stdout
