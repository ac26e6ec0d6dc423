"""Command line of the reference desktop client: chat with a server as the desktop app would.

    python -m devclient --server http://127.0.0.1:8000 --email me@example.com chat "list my tasks"

It logs in (``--register`` creates the account first), connects the device
WebSocket with a local SQLite workspace (``--db``) that answers the server's
tool calls, and then runs one subcommand:

- ``chat MESSAGE``: one Home request; the answer streams to stdout.
- ``floating --scope-type T [--scope-id ID] MESSAGE``: one Floating request.
- ``serve``: stay connected answering tool calls until Ctrl-C, for the REST
  ``/chat`` fallback or batch agents.

``--agent-folder DIR`` (repeatable) shares a folder with batch agents: their
runs read the matching files in it (and below it), and nothing outside the
shared folders. Without it, every batch run is answered "no shared folders".

Only the answer goes to stdout. Tool calls (``→ select tasks {...}`` and
``← 3 rows``), the floating domain, errors, other server frames and the
mutations go to stderr, one line each. Exit code: 0 when the request ended
without error frames, 1 after error frames (or no end in time), 2 when
logging in or the connection failed.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import os
import sys
import uuid
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, Final

import httpx
from websockets.exceptions import WebSocketException

from devclient.agent_files import SharedFolders
from devclient.client import (
    REQUEST_TIMEOUT_S,
    AuthError,
    DeviceClient,
    DeviceClosedError,
    Frame,
    ToolCallHook,
    device_url,
    floating_request,
    home_request,
    login,
    register_or_login,
    tool_result_payload,
)
from devclient.store import LocalStore

EXIT_OK: Final = 0
EXIT_ERROR_FRAMES: Final = 1
EXIT_CONNECTION: Final = 2
EXIT_INTERRUPTED: Final = 130

PASSWORD_ENV: Final = "ADIUVA_PASSWORD"  # noqa: S105 -- a variable name, not a password
_EXCERPT_CHARS: Final = 200


class Console:
    """Writes the answer to stdout and everything else to stderr, one line each.

    The answer streams in chunks that need not end lines; a note printed while
    a line of the answer is open starts on a new line, so a terminal showing
    both streams stays readable while stdout holds exactly the answer.
    """

    def __init__(self) -> None:
        self.error_count = 0
        self._mid_line = False

    def answer(self, chunk: str) -> None:
        """Stream a piece of the answer to stdout as it arrives."""
        if chunk:
            sys.stdout.write(chunk)
            sys.stdout.flush()
            self._mid_line = not chunk.endswith("\n")

    def end_answer(self) -> None:
        """End the answer's last line."""
        if self._mid_line:
            sys.stdout.write("\n")
            sys.stdout.flush()
            self._mid_line = False

    def note(self, line: str) -> None:
        """Print one line to stderr."""
        prefix = "\n" if self._mid_line else ""
        self._mid_line = False
        print(prefix + line, file=sys.stderr, flush=True)

    def error(self, line: str) -> None:
        """Print an error line and count it for the exit code."""
        self.error_count += 1
        self.note(f"error: {line}")

    def show(self, frame: Frame) -> None:
        """Print one server frame of a request or of the general inbox."""
        match frame["type"]:
            case "stream_text":
                self.answer(str(frame.get("chunk", "")))
            case "stream_end":
                self.end_answer()
                for mutation in frame.get("mutations") or []:
                    self.note(f"mutation: {describe_mutation(mutation)}")
            case "error":
                self.error(describe_error(frame))
            case "floating_domain":
                self.note(f"domain: {frame.get('domain')}")
            case "stream_start" | "tool_call" | "pong":
                pass  # nothing to show; tool calls are shown as they are answered
            case "agent_run":
                paths = ", ".join(map(str, (frame.get("config") or {}).get("paths") or []))
                self.note(f"batch run {frame.get('run_id')}: reading {paths}")
            case _:
                self.note(f"{frame['type']}: {_clip(json.dumps(frame, ensure_ascii=False))}")


def _clip(text: str) -> str:
    return text if len(text) <= _EXCERPT_CHARS else text[: _EXCERPT_CHARS - 1] + "…"


def describe_call(call: Frame) -> str:
    """One line for a tool call, e.g. ``select tasks {"status": "todo"}``."""
    parts = [str(call.get("action")), *([str(call["table"])] if call.get("table") else [])]
    parts += [
        _clip(json.dumps(call[key], ensure_ascii=False))
        for key in ("filters", "data")
        if call.get(key)
    ]
    if isinstance(call.get("vector"), list):
        parts.append(f"<{len(call['vector'])}-d vector>")
    if call.get("limit") is not None:
        parts.append(f"limit {call['limit']}")
    return " ".join(parts)


def describe_result(payload: Frame) -> str:
    """One line for a tool result payload, e.g. ``3 rows``."""
    if "error" in payload:
        return f"error: {payload['error']}"
    for key, noun in (("rows", "row"), ("results", "result")):
        if isinstance(payload.get(key), list):
            count = len(payload[key])
            return f"{count} {noun}{'' if count == 1 else 's'}"
    if "row" in payload:
        row = payload["row"]
        return f"row {row.get('id')}" if isinstance(row, dict) else "no row"
    flags = [key for key in ("deleted", "ok") if payload.get(key) is True]
    return flags[0] if flags else _clip(json.dumps(payload))


def describe_mutation(mutation: Any) -> str:
    """One line for a ``stream_end`` mutation, e.g. ``insert tasks {...}``."""
    if not isinstance(mutation, dict):
        return json.dumps(mutation)
    data = json.dumps(mutation.get("data"), ensure_ascii=False)
    return f"{mutation.get('action')} {mutation.get('table')} {data}"


def describe_error(frame: Frame) -> str:
    """One line for an ``error`` frame, e.g. ``rate_limited: … (retry after 12.5 s)``."""
    retry = f" (retry after {frame['retry_after']} s)" if "retry_after" in frame else ""
    return f"{frame.get('code')}: {frame.get('message')}{retry}"


def logging_answerer(store: LocalStore, console: Console) -> ToolCallHook:
    """An `on_tool_call` hook that answers from the store and prints both directions."""

    async def answer(call: Frame) -> Frame:
        console.note(f"→ {describe_call(call)}")
        payload = tool_result_payload(store, call)
        console.note(f"← {describe_result(payload)}")
        return payload

    return answer


async def _watch_general_inbox(client: DeviceClient, console: Console) -> None:
    """Print frames of no request (errors, agent runs, …) until the connection ends."""
    try:
        while True:
            console.show(await client.next_frame(timeout_s=None))
    except DeviceClosedError:
        return


# --- subcommands -------------------------------------------------------------------

Command = Callable[[DeviceClient, argparse.Namespace, Console], Awaitable[None]]


async def _stream_request(
    client: DeviceClient, request: Frame, timeout_s: float, console: Console
) -> None:
    """Send one chat request and print its frames until it ends."""
    request_id = await client.start_request(request)
    try:
        async with asyncio.timeout(timeout_s):
            async for frame in client.stream(request_id):
                console.show(frame)
    except TimeoutError:
        console.error(f"request {request_id} did not end within {timeout_s:g} s")


async def _chat(client: DeviceClient, args: argparse.Namespace, console: Console) -> None:
    request = home_request(args.message, thread_id=args.thread_id)
    await _stream_request(client, request, args.timeout, console)


async def _floating(client: DeviceClient, args: argparse.Namespace, console: Console) -> None:
    request = floating_request(
        args.message, args.scope_type, args.scope_id, thread_id=args.thread_id
    )
    await _stream_request(client, request, args.timeout, console)


async def _serve(client: DeviceClient, args: argparse.Namespace, console: Console) -> None:
    """Answer tool calls until the server closes the connection (or Ctrl-C)."""
    console.note(f"connected as device {client.device_id}; answering tool calls until Ctrl-C")
    code, reason = await client.wait_closed(timeout_s=None)
    raise DeviceClosedError(code, reason)


COMMANDS: Final[dict[str, Command]] = {"chat": _chat, "floating": _floating, "serve": _serve}


# --- running -----------------------------------------------------------------------


def stored_device_id(db: str) -> str:
    """The device id kept in ``<db>.device-id``, made on first use: one store, one device."""
    if db == ":memory:":
        return f"devclient-{uuid.uuid4().hex}"
    path = Path(f"{db}.device-id")
    if path.exists() and (existing := path.read_text(encoding="utf-8").strip()):
        return existing
    device_id = f"devclient-{uuid.uuid4().hex}"
    path.write_text(device_id + "\n", encoding="utf-8")
    return device_id


async def run(args: argparse.Namespace, password: str) -> int:
    """Log in, connect, run the subcommand; return the exit code."""
    console = Console()
    Path(args.db).parent.mkdir(parents=True, exist_ok=True)
    store = LocalStore(args.db)
    try:
        return await _run_connected(args, password, store, console)
    except (httpx.TransportError, OSError) as error:
        console.note(f"error: cannot reach {args.server}: {str(error) or type(error).__name__}")
    except (AuthError, WebSocketException, DeviceClosedError) as error:
        console.note(f"error: {error}")
    finally:
        store.close()
    return EXIT_CONNECTION


async def _run_connected(
    args: argparse.Namespace, password: str, store: LocalStore, console: Console
) -> int:
    authenticate = register_or_login if args.register else login
    tokens = await authenticate(args.server, args.email, password)
    client = await DeviceClient.connect(
        server=args.server,
        token=tokens["access_token"],
        device_id=args.device_id or stored_device_id(args.db),
        store=store,
        on_tool_call=logging_answerer(store, console),
        shared_folders=SharedFolders(args.agent_folder) if args.agent_folder else None,
    )
    watcher = asyncio.create_task(_watch_general_inbox(client, console))
    try:
        await COMMANDS[args.command](client, args, console)
    finally:
        await client.close()
        await watcher  # ends once it has printed every frame that arrived
    return EXIT_ERROR_FRAMES if console.error_count else EXIT_OK


def _server_url(value: str) -> str:
    """Argparse type: an http(s) base URL the device WebSocket URL can be made from."""
    try:
        device_url(value, "")
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from error
    return value


def build_parser() -> argparse.ArgumentParser:
    """The argparse parser: global options, then the chat, floating or serve subcommand."""
    parser = argparse.ArgumentParser(
        prog="python -m devclient",
        description="Reference Adiuva desktop client: chat with the server, "
        "answering its tool calls from a local SQLite workspace.",
    )
    parser.add_argument("--server", type=_server_url, default="http://127.0.0.1:8000")
    parser.add_argument("--email", required=True)
    parser.add_argument(
        "--password",
        help=f"default: ${PASSWORD_ENV}, else asked (visible to other local users when given here)",
    )
    parser.add_argument(
        "--register", action="store_true", help="create the account (log in if it exists)"
    )
    parser.add_argument("--db", default="devclient.sqlite3", help="local workspace database")
    parser.add_argument("--device-id", help="default: a stable id kept in <db>.device-id")
    parser.add_argument(
        "--agent-folder",
        action="append",
        default=[],
        metavar="DIR",
        help="a folder batch agents may read (repeat for several); none by default",
    )
    parser.add_argument(
        "--timeout", type=float, default=REQUEST_TIMEOUT_S, help="seconds to wait for an answer"
    )
    commands = parser.add_subparsers(dest="command", required=True)
    chat = commands.add_parser("chat", help="ask the Home assistant")
    chat.add_argument("message")
    chat.add_argument("--thread-id")
    floating = commands.add_parser("floating", help="ask the Floating assistant about one entity")
    floating.add_argument(
        "--scope-type", required=True, choices=("task", "project", "note", "timeline")
    )
    floating.add_argument("--scope-id")
    floating.add_argument("message")
    floating.add_argument("--thread-id")
    commands.add_parser("serve", help="answer tool calls until Ctrl-C")
    return parser


def resolve_password(args: argparse.Namespace) -> str:
    """--password, else $ADIUVA_PASSWORD, else asked on the terminal."""
    return (
        args.password
        or os.environ.get(PASSWORD_ENV)
        or getpass.getpass(f"Password for {args.email}: ")
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m devclient``; returns the exit code."""
    args = build_parser().parse_args(argv)
    try:
        password = resolve_password(args)
    except (EOFError, KeyboardInterrupt):
        print("\nerror: no password given", file=sys.stderr)
        return EXIT_CONNECTION
    try:
        return asyncio.run(run(args, password))
    except KeyboardInterrupt:
        return EXIT_OK if args.command == "serve" else EXIT_INTERRUPTED
