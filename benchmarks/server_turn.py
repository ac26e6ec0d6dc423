"""One typical chat turn through the real server: CPU, latency, throughput, profile.

    .venv/bin/python -m benchmarks.server_turn [--quick] [--profile DIR] [--server-env K=V ...]
    .venv/bin/python -m benchmarks.server_turn --analyse DIR/server.raw

Starts `python -m app serve` (embedded PostgreSQL, its own data directory),
with LiteLLM pointed at a scripted OpenAI-compatible model on loopback (chat
and embeddings, zero latency, in a subprocess of its own), and drives it over
the device socket with `devclient` desktops that answer tool calls from SQLite.
Memory (embeddings included), checkpoint encryption and the tag filter are on,
as in production.

A typical turn is the one `benchmarks.turn` times in-process (its
`typical_turn` script: supervisor -> `task` -> task_agent -> `list_tasks` on the
desktop -> answers, 4 model calls); that in-process figure is measured in the
same run with `benchmarks.turn.measure` and printed beside ours, with two more
in-process runs of the same graph, no server around it: its model `ChatLiteLLM`
to the scripted model, and a bare model on the OpenAI SDK (what LiteLLM costs).
Figures:

- server CPU per turn, the server process and its PostgreSQL (every backend)
  apart, read with psutil around each phase;
- one device: latency p50/p99 and time to the first `stream_text`, also for a
  direct answer (one model call), against the bare model's own time;
- 10 and 50 concurrent devices (one user each): turns/s, p50/p99/max, lost;
- the same for REST `POST /chat`;
- one thread growing over 200 turns: its 200th turn against its 10th.

Each device turn uses a fresh `thread_id` (as `benchmarks.turn` runs each turn
on a fresh graph state), except the growing thread; REST turns always use the
user's one REST thread. With `--profile DIR`, py-spy samples the server during
extra single-device turns and the grouped profile is printed (`--analyse`
prints it again from the raw file).

Figures are printed beside their targets, never asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import openai
import psutil
import uvicorn
import uvloop
from langchain_core.callbacks import AsyncCallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.language_models.chat_models import agenerate_from_stream
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    HumanMessage,
    ToolMessage,
    convert_to_openai_messages,
)
from langchain_core.messages.ai import UsageMetadata
from langchain_core.messages.tool import tool_call_chunk
from langchain_core.outputs import ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable
from langchain_core.utils.function_calling import convert_to_openai_tool

import app  # noqa: F401 - sets LITELLM_LOCAL_MODEL_COST_MAP before anything imports litellm
from agents.llm import ModelConfig, chat_model
from agents.supervisors import Graph, build_supervisors
from benchmarks.turn import measure, ours, thread_growth, typical_turn
from devclient.client import DeviceClient, home_request, register
from devclient.store import LocalStore
from tests.e2e.server_process import PROJECT_ROOT, ServerProcess
from tests.llm.scripted_openai import ChatRequest, ReplyLike, ScriptedLLM, TextReply

MODEL = "openai/gpt-4o-mini"  # a name LiteLLM knows, as in production; the server ignores it
EMBEDDING_MODEL = "openai/text-embedding-3-small"
TYPICAL_MESSAGE = "What are my tasks?"
DIRECT_MESSAGE = "hello"
DIRECT_ANSWER = "Hello! How can I help you today?"
LONG_MESSAGE = "tell me a story"
LONG_CHUNKS = 300
LONG_ANSWER = ("Once upon a time " * LONG_CHUNKS)[: 4 * LONG_CHUNKS]  # 4 characters a chunk
PASSWORD = "a long passphrase"  # noqa: S105 - benchmark accounts on a throwaway database
TURN_TIMEOUT_S = 60.0
SLOW_TURN_S = 5.0
SETTLE_S = 0.5  # memory writes run after stream_end: let them finish inside the window


def _typical_answer() -> str:
    reply = typical_turn([ToolMessage("report", tool_call_id="call")], ["task"])
    assert isinstance(reply, TextReply)
    return reply.text


TYPICAL_ANSWER = _typical_answer()


# --- the scripted model (its own process) -----------------------------------------------


def policy(request: ChatRequest) -> ReplyLike:
    """`benchmarks.turn.typical_turn` for the HTTP model; "hello" is answered at once."""
    last = request.last_message
    if last.role == "user" and "task" in request.tool_names:
        if last.text == DIRECT_MESSAGE:
            return TextReply(DIRECT_ANSWER)
        if last.text == LONG_MESSAGE:
            return TextReply(LONG_ANSWER, chunk_size=4)
    message: BaseMessage = (
        HumanMessage(last.text)
        if last.role == "user"
        else ToolMessage(last.text, tool_call_id=last.tool_call_id or "call")
    )
    return typical_turn([message], request.tool_names)


async def serve_llm() -> None:
    """The `--serve-llm` mode: serve the scripted model, print its port, stop at stdin EOF.

    Served here rather than with `scripted_llm`, whose listening socket has no
    `IPPROTO_TCP` proto: asyncio then leaves TCP_NODELAY off on the accepted
    connections, and each answer on a kept-alive connection waits ~40 ms for a
    delayed ACK. A client that reuses connections would be timed on that stall.
    """
    llm = ScriptedLLM(policy)
    llm.requests = _Forgetful()  # keep nothing: thousands of prompts would pile up
    llm.embedding_requests = _Forgetful()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    llm.port = int(sock.getsockname()[1])
    config = uvicorn.Config(
        llm.app, log_config=None, log_level="warning", access_log=False, lifespan="off"
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:  # noqa: ASYNC110 - uvicorn has no event for it
        await asyncio.sleep(0.01)
    print(llm.port, flush=True)
    await asyncio.to_thread(sys.stdin.read)
    server.should_exit = True
    await task


class _Forgetful(list[Any]):
    def append(self, item: Any) -> None:
        pass


@contextlib.contextmanager
def llm_process() -> Iterator[tuple[str, psutil.Process]]:
    """The scripted model in a subprocess; its `api_base` and process."""
    child = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.server_turn", "--serve-llm"],
        cwd=PROJECT_ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    try:
        assert child.stdout is not None
        port = int(child.stdout.readline())
        yield f"http://127.0.0.1:{port}/v1", psutil.Process(child.pid)
    finally:
        assert child.stdin is not None
        child.stdin.close()
        try:
            child.wait(timeout=15)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


# --- the floor: the same graph on the OpenAI SDK, without LiteLLM ------------------------


class OpenAIFloor(BaseChatModel):
    """A minimal streaming chat model straight on `openai.AsyncOpenAI`.

    Not a candidate implementation (no retries of cut streams, no fallbacks, OpenAI-
    compatible providers only): it shows what the graph costs when its model calls
    skip LiteLLM and langchain-litellm, next to `ChatLiteLLM` in the same run.
    """

    client: Any
    model_name: str

    @property
    def _llm_type(self) -> str:
        return "openai-floor"

    def bind_tools(self, tools: Sequence[Any], **kwargs: Any) -> Runnable[Any, AIMessage]:
        return self.bind(tools=[convert_to_openai_tool(tool) for tool in tools], **kwargs)

    def _generate(self, *args: Any, **kwargs: Any) -> ChatResult:
        raise NotImplementedError

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        return await agenerate_from_stream(self._astream(messages, stop, run_manager, **kwargs))

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        stream = await self.client.chat.completions.create(
            model=self.model_name,
            messages=convert_to_openai_messages(messages),
            stream=True,
            stream_options={"include_usage": True},
            **kwargs,
        )
        async for chunk in stream:
            if not chunk.choices:
                usage = chunk.usage
                if usage is not None:
                    tokens = UsageMetadata(
                        input_tokens=usage.prompt_tokens,
                        output_tokens=usage.completion_tokens,
                        total_tokens=usage.total_tokens,
                    )
                    yield ChatGenerationChunk(
                        message=AIMessageChunk(content="", usage_metadata=tokens)
                    )
                continue
            choice = chunk.choices[0]
            calls = [
                tool_call_chunk(
                    name=call.function.name if call.function else None,
                    args=call.function.arguments if call.function else None,
                    id=call.id,
                    index=call.index,
                )
                for call in choice.delta.tool_calls or []
            ]
            message = AIMessageChunk(content=choice.delta.content or "", tool_call_chunks=calls)
            if choice.finish_reason:
                message.response_metadata = {"finish_reason": choice.finish_reason}
            generation = ChatGenerationChunk(message=message)
            if run_manager is not None:
                await run_manager.on_llm_new_token(generation.text, chunk=generation)
            yield generation


# --- CPU --------------------------------------------------------------------------------


def _own_cpu(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


@dataclass
class Cpu:
    server: float
    postgres: float
    load: float  # the benchmark process and the scripted model: the load generator


class CpuMeter:
    """CPU seconds used so far by the server, its PostgreSQL and the load generator.

    PostgreSQL's are the postmaster's, its live backends' and those of the
    backends it has already reaped (the postmaster's `children_*` times).
    """

    def __init__(self, server_pid: int, pgdata: Path, llm: psutil.Process) -> None:
        self._server = psutil.Process(server_pid)
        pid = int((pgdata / "postmaster.pid").read_text().split()[0])
        self._postmaster = psutil.Process(pid)
        self._llm = llm
        self._me = psutil.Process()

    def read(self) -> Cpu:
        times = self._postmaster.cpu_times()
        postgres = float(times.user + times.system + times.children_user + times.children_system)
        for child in self._postmaster.children(recursive=True):
            with contextlib.suppress(psutil.NoSuchProcess):
                postgres += _own_cpu(child)
        return Cpu(
            server=_own_cpu(self._server),
            postgres=postgres,
            load=_own_cpu(self._me) + _own_cpu(self._llm),
        )


# --- turns ------------------------------------------------------------------------------


@dataclass
class Sample:
    latency_ns: int
    first_text_ns: int | None = None
    ok: bool = True


@dataclass
class Device:
    email: str
    token: str
    client: DeviceClient


async def device_turn(
    client: DeviceClient, message: str, expected: str, thread_id: str | None = None
) -> Sample:
    """One Home request; timed to the first `stream_text` and to `stream_end`."""
    started = time.perf_counter_ns()
    first: int | None = None
    text: list[str] = []
    last = ""
    try:
        request_id = await client.start_request(home_request(message, thread_id=thread_id))
        async with asyncio.timeout(TURN_TIMEOUT_S):
            async for frame in client.stream(request_id):
                last = frame["type"]
                if last == "stream_text":
                    if first is None:
                        first = time.perf_counter_ns() - started
                    text.append(frame["chunk"])
    except Exception:
        return Sample(time.perf_counter_ns() - started, first, ok=False)
    ok = last == "stream_end" and "".join(text) == expected
    return Sample(time.perf_counter_ns() - started, first, ok)


async def rest_turn(http: httpx.AsyncClient, token: str, message: str, expected: str) -> Sample:
    started = time.perf_counter_ns()
    try:
        response = await http.post(
            "/api/v1/chat",
            json={"message": message},
            headers={"Authorization": f"Bearer {token}"},
        )
        ok = response.status_code == 200 and response.json()["response"] == expected
    except Exception:
        ok = False
    return Sample(time.perf_counter_ns() - started, ok=ok)


def fresh_thread() -> str:
    return uuid.uuid4().hex


def typical(device: Device) -> Callable[[], Awaitable[Sample]]:
    return lambda: device_turn(device.client, TYPICAL_MESSAGE, TYPICAL_ANSWER, fresh_thread())


def direct(device: Device) -> Callable[[], Awaitable[Sample]]:
    return lambda: device_turn(device.client, DIRECT_MESSAGE, DIRECT_ANSWER, fresh_thread())


def long(device: Device) -> Callable[[], Awaitable[Sample]]:
    return lambda: device_turn(device.client, LONG_MESSAGE, LONG_ANSWER, fresh_thread())


def rest(http: httpx.AsyncClient, device: Device) -> Callable[[], Awaitable[Sample]]:
    return lambda: rest_turn(http, device.token, TYPICAL_MESSAGE, TYPICAL_ANSWER)


@dataclass
class Phase:
    samples: list[Sample]
    wall_s: float
    cpu: Cpu  # per turn, in seconds

    @property
    def turns(self) -> int:
        return len(self.samples)

    @property
    def lost(self) -> int:
        return sum(1 for s in self.samples if not s.ok)

    def latency(self) -> Stats:
        return Stats.of([s.latency_ns for s in self.samples])

    def first_text(self) -> Stats:
        return Stats.of([s.first_text_ns for s in self.samples if s.first_text_ns is not None])

    def slower_than(self, seconds: float) -> int:
        return sum(1 for s in self.samples if s.latency_ns > seconds * 1e9)


@dataclass(frozen=True)
class Stats:
    p50: float  # ms
    p99: float
    max: float

    @classmethod
    def of(cls, samples_ns: Sequence[int]) -> Stats:
        if not samples_ns:
            return cls(float("nan"), float("nan"), float("nan"))
        ordered = sorted(samples_ns)
        p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
        return cls(statistics.median(ordered) / 1e6, p99 / 1e6, ordered[-1] / 1e6)


async def run_phase(
    meter: CpuMeter, runners: Sequence[Callable[[], Awaitable[Sample]]], turns_each: int
) -> Phase:
    """Each runner does `turns_each` turns back to back, all runners at once."""

    async def drive(run: Callable[[], Awaitable[Sample]]) -> list[Sample]:
        return [await run() for _ in range(turns_each)]

    before = meter.read()
    started = time.perf_counter()
    results = await asyncio.gather(*(drive(run) for run in runners))
    wall_s = time.perf_counter() - started
    await asyncio.sleep(SETTLE_S)
    after = meter.read()
    samples = [sample for result in results for sample in result]
    n = max(1, len(samples))
    cpu = Cpu(
        server=(after.server - before.server) / n,
        postgres=(after.postgres - before.postgres) / n,
        load=(after.load - before.load) / n,
    )
    return Phase(samples, wall_s, cpu)


async def bare_model(api_base: str, calls: int) -> tuple[float, float]:
    """The scripted model alone, from here: p50 time to its first text chunk and to [DONE]."""
    body = {
        "model": MODEL.split("/")[1],
        "messages": [
            {"role": "system", "content": "You help."},
            {"role": "user", "content": DIRECT_MESSAGE},
        ],
        "tools": [{"type": "function", "function": {"name": "task", "parameters": {}}}],
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    firsts, totals = [], []
    async with httpx.AsyncClient(base_url=api_base, timeout=30) as http:
        for _ in range(calls + 5):
            started = time.perf_counter_ns()
            first = 0
            async with http.stream("POST", "/chat/completions", json=body) as response:
                async for line in response.aiter_lines():
                    if not first and '"content": "' in line and '"content": ""' not in line:
                        first = time.perf_counter_ns() - started
            firsts.append(first)
            totals.append(time.perf_counter_ns() - started)
    return statistics.median(firsts[5:]) / 1e6, statistics.median(totals[5:]) / 1e6


# --- accounts and desktops --------------------------------------------------------------


async def make_devices(base_url: str, workdir: Path, count: int, prefix: str) -> list[Device]:
    devices = []
    async with httpx.AsyncClient(timeout=30) as http:
        for n in range(count):
            email = f"{prefix}-{n}@example.com"
            tokens = await register(base_url, email, PASSWORD, http=http)
            store = LocalStore(workdir / f"{prefix}-{n}.sqlite3")
            store.execute(action="insert", table="tasks", data={"title": "Invoice ACME"})
            client = await DeviceClient.connect(
                server=base_url, token=str(tokens["access_token"]), device_id="desk", store=store
            )
            devices.append(Device(email, str(tokens["access_token"]), client))
    return devices


# --- the profile ------------------------------------------------------------------------


def py_spy() -> str:
    found = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(found).exists():
        msg = "py-spy is not installed (make install: it is in the dev dependencies)"
        raise RuntimeError(msg)
    return found


@contextlib.contextmanager
def sampling(pid: int, output: Path, rate: int, extra: Sequence[str]) -> Iterator[None]:
    """py-spy samples `pid` into `output` (collapsed stacks).

    Only samples holding the GIL: idle pool threads waiting on a lock would otherwise
    count (py-spy takes them for active); C code that releases the GIL is not counted.
    """
    command = [
        py_spy(), "record", "--pid", str(pid), "--rate", str(rate), "--format", "raw",
        "--full-filenames", "--function", "--gil", *extra, "--output", str(output),
    ]  # fmt: skip
    spy = subprocess.Popen(  # noqa: S603 - py-spy from our venv, our own arguments
        command,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    time.sleep(1.0)  # attached
    try:
        yield
    finally:
        spy.send_signal(signal.SIGINT)
        _, errors = spy.communicate(timeout=60)
        if not output.exists():
            msg = f"py-spy wrote nothing: {errors.decode(errors='replace')}"
            raise RuntimeError(msg)


FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")
SITE = re.compile(r"^.*?/(?:site|dist)-packages/")
STDLIB = re.compile(r"^.*?/lib/python3\.\d+/")


def short_file(path: str) -> str:
    """`litellm/main.py`, `app/chat/service.py`, `asyncio/events.py`."""
    if SITE.match(path):
        return SITE.sub("", path)
    root = str(PROJECT_ROOT) + "/"
    if path.startswith(root):
        return path[len(root) :]
    return STDLIB.sub("", path)


Frame = tuple[str, str]  # function, short file


def parse_raw(path: Path) -> list[tuple[list[Frame], int]]:
    """py-spy's collapsed stacks: root first, with their sample counts."""
    stacks = []
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        frames = []
        for text in stack.split(";"):
            match = FRAME.match(text)
            if match is None:
                frames.append((text, ""))
            else:
                frames.append((match["func"], short_file(match["file"])))
        stacks.append((frames, int(count)))
    return stacks


@dataclass(frozen=True)
class Rule:
    """Frames of these files (path prefixes) or functions (as py-spy names them)."""

    name: str
    paths: tuple[str, ...] = ()
    functions: frozenset[str] = frozenset()

    def matches(self, frame: Frame) -> bool:
        func, path = frame
        return (bool(self.paths) and path.startswith(self.paths)) or func in self.functions


LITELLM_LOGGING = (
    "litellm/litellm_core_utils/litellm_logging", "litellm/integrations/", "litellm/_logging",
    "litellm/litellm_core_utils/logging_", "litellm/_service_logger", "litellm/caching/",
)  # fmt: skip
LITELLM_COST = (
    "litellm/cost_calculator", "litellm/litellm_core_utils/llm_cost_calc",
    "litellm/litellm_core_utils/token_counter",
    "litellm/litellm_core_utils/fallback_generalizations",
    "litellm/llms/openai/cost_calculation",
)  # fmt: skip
LITELLM_COST_FUNCTIONS = frozenset({
    "get_model_info", "_cached_get_model_info", "_build_model_info", "get_model_info_helper",
    "cached_get_model_info_helper", "_get_model_info_from_generalization",
    "_first_registered_match", "token_counter", "completion_cost",
})  # fmt: skip
CHUNK_BUILDER = ("litellm/litellm_core_utils/streaming_chunk_builder",)
CHUNK_BUILDER_FUNCTIONS = frozenset({"stream_chunk_builder", "_stamp_streaming_usage_cost"})
HTTP_CLIENT = ("httpx/", "httpcore/", "aiohttp/", "h11/", "anyio/_core/_sockets")
HTTP_CLIENT_FUNCTIONS = frozenset({"AsyncIOBackend.connect_tcp", "AsyncIOBackend.getaddrinfo"})
CALLBACKS = ("langchain_core/callbacks/", "langchain_core/tracers/", "langgraph/pregel/_messages")
CHECKPOINT = ("langgraph/checkpoint/", "app/chat/checkpoint_", "psycopg/", "psycopg_pool/")
SOCKET = (
    "websockets/", "uvicorn/protocols/websockets/", "starlette/websockets", "protocol/",
    "app/device/protocol", "app/device/link", "app/device/pending",
)  # fmt: skip
SOCKET_FUNCTIONS = frozenset({"DeviceConnection.send", "DeviceConnection._receive_loop"})
REST = ("uvicorn/protocols/http/", "starlette/", "fastapi/")
TAGS = ("app/chat/formatter", "app/chat/tags")

# Where the CPU is spent, by the code that spends it: a sample goes to the innermost frame
# that a rule matches (the first such rule). Code without a rule (the stdlib, pydantic,
# json, cryptography, ...) counts for its caller.
COMPONENTS = [
    Rule("LiteLLM: logging & callbacks", LITELLM_LOGGING),
    Rule("LiteLLM: cost & token bookkeeping", LITELLM_COST, LITELLM_COST_FUNCTIONS),
    Rule("LiteLLM: rebuilding each answer from its chunks", CHUNK_BUILDER, CHUNK_BUILDER_FUNCTIONS),
    Rule("LiteLLM: CustomStreamWrapper, per chunk", ("litellm/litellm_core_utils/streaming_hand",)),
    Rule("LiteLLM: response & chunk objects (litellm/types)", ("litellm/types/",)),
    Rule("LiteLLM: provider request/response transformation", ("litellm/llms/",)),
    Rule("LiteLLM: call set-up & wrappers (main, utils, core_utils)", ("litellm/",)),
    Rule("openai SDK (request building, SSE, response models)", ("openai/",)),
    Rule("HTTP client to the model (httpx, h11, connect)", HTTP_CLIENT, HTTP_CLIENT_FUNCTIONS),
    Rule("langchain-litellm (message and chunk conversion)", ("langchain_litellm/",)),
    Rule("LangChain callbacks & LangGraph stream handlers", CALLBACKS),
    Rule("LangChain core (messages, runnables, tools)", ("langchain_core/",)),
    Rule("checkpoint serialisation (LangGraph serde)", ("langgraph/checkpoint/serde/",)),
    Rule("checkpoint encryption (ours)", ("app/chat/checkpoint_cipher",)),
    Rule("checkpoint saver + psycopg", CHECKPOINT),
    Rule("LangGraph runtime (pregel loop, channels, streaming)", ("langgraph/",)),
    Rule("agent middleware (langchain.agents, deepagents)", ("langchain/", "deepagents/")),
    Rule("our agents/ and tools/", ("agents/", "tools/")),
    Rule("memory (app/memory, pgvector)", ("app/memory/", "pgvector/")),
    Rule("SQLAlchemy + asyncpg", ("sqlalchemy/", "asyncpg/")),
    Rule("formatter + tag filter", TAGS),
    Rule("chat service (app/chat)", ("app/chat/",)),
    Rule("device socket (app/device, protocol, websockets)", ("app/device/", *SOCKET)),
    Rule("HTTP server (uvicorn http, starlette, fastapi)", REST),
    Rule("app: other (auth, core, logging)", ("app/",)),
]  # fmt: skip

# Frames at the bottom of every stack: never what a sample is spent on.
ENTRY_POINTS = ("app/__main__.py", "app/cli.py", "uvicorn/server.py", "uvicorn/_compat.py", "<")
EVENT_LOOP = "event loop (uvloop's C code: I/O callbacks, task switching)"


def component(stack: list[Frame]) -> str:
    for frame in reversed(stack):
        if frame[1].startswith(ENTRY_POINTS):
            continue
        for rule in COMPONENTS:
            if rule.matches(frame):
                return rule.name
    if stack and stack[-1][0] == "Runner.run":
        return EVENT_LOOP
    leaf = stack[-1][1] if stack else ""
    return f"other: {leaf.split('/')[0] or 'native'}"


Feature = Callable[[list[Frame]], bool]


def anywhere(paths: tuple[str, ...] = (), functions: frozenset[str] = frozenset()) -> Feature:
    rule = Rule("", paths, functions)
    return lambda stack: any(rule.matches(frame) for frame in stack)


def embedding_call(stack: list[Frame]) -> bool:
    return any(func == "aembedding" for func, _ in stack)


def model_call(stack: list[Frame]) -> bool:
    """A chat model call: LiteLLM and below, the end-of-stream work in its worker thread too."""
    paths = ("langchain_litellm/", "litellm/", "openai/", *HTTP_CLIENT)
    return anywhere(paths, HTTP_CLIENT_FUNCTIONS)(stack) and not embedding_call(stack)


def named(*functions: str) -> Feature:
    return anywhere(functions=frozenset(functions))


def in_greenlet(stack: list[Frame]) -> bool:
    """SQLAlchemy's ORM runs in a greenlet: py-spy sees its stack without the caller's."""
    return bool(stack) and stack[0][1].startswith("sqlalchemy/")


def memory(stack: list[Frame]) -> bool:
    return named("TurnMemory.load", "TurnMemory.remember")(stack) or in_greenlet(stack)


# What each feature costs, inclusive: a sample counts for every feature on its stack. Those
# marked True are broken down by component too.
FEATURES: list[tuple[str, Feature, bool]] = [
    ("chat model calls (langchain-litellm, LiteLLM, openai SDK, httpx)", model_call, True),
    ("LangChain callbacks (on_llm_new_token, stream handlers)", anywhere(CALLBACKS), False),
    ("checkpointer (load, save, prune: serde, encryption, psycopg)", anywhere(CHECKPOINT), True),
    ("memory, all (as below, and the ORM work in greenlets)", memory, True),
    ("  recall before the turn (TurnMemory.load)", named("TurnMemory.load"), True),
    ("    of which the embedding call (litellm.aembedding)", embedding_call, False),
    ("  write after the turn (TurnMemory.remember)", named("TurnMemory.remember"), True),
    ("  ORM work in greenlets (callers unseen: memory, data keys)", in_greenlet, False),
    ("pgvector: vectors to text, anywhere", anywhere(("pgvector/",)), False),
    ("thread state read (ChatService._thread_start)", named("ChatService._thread_start"), False),
    ("formatter + tag filter", anywhere(TAGS), False),
    ("device socket: frames in and out", anywhere(SOCKET, SOCKET_FUNCTIONS), False),
    ("REST requests (uvicorn's HTTP protocol)", anywhere(("uvicorn/protocols/http/",)), False),
    ("SQLAlchemy + asyncpg, anywhere", anywhere(("sqlalchemy/", "asyncpg/")), False),
    ("psycopg (the checkpointer's driver)", anywhere(("psycopg/", "psycopg_pool/")), False),
    ("pydantic, anywhere", anywhere(("pydantic/", "pydantic_core/")), False),
    ("json, anywhere", anywhere(("json/",)), False),
    ("copy.deepcopy, anywhere", anywhere(("copy.py",)), False),
    ("stdlib logging, anywhere", anywhere(("logging/",)), False),
    ("event loop only (uvloop C code)", lambda stack: component(stack) == EVENT_LOOP, False),
]  # fmt: skip


def profile_report(path: Path, turns: int | None = None, top: int = 25) -> str:
    """The profile grouped by component and by feature, and its top functions."""
    stacks = parse_raw(path)
    total = sum(count for _, count in stacks)
    if not total:
        return "no samples"
    by_component: Counter[str] = Counter()
    by_feature: Counter[str] = Counter()
    detail: dict[str, Counter[str]] = {name: Counter() for name, _, split in FEATURES if split}
    self_time: Counter[Frame] = Counter()
    inclusive: Counter[Frame] = Counter()
    for stack, count in stacks:
        where = component(stack)
        by_component[where] += count
        for name, feature, split in FEATURES:
            if feature(stack):
                by_feature[name] += count
                if split:
                    detail[name][where] += count
        self_time[stack[-1]] += count
        for frame in set(stack):
            inclusive[frame] += count

    def share(count: int) -> str:
        return f"{count / total:6.1%}"

    per_turn = f", {turns} turns" if turns else ""
    lines = [f"profile of the server process: {total} samples holding the GIL{per_turn} ({path})"]
    lines.append("where the CPU goes, by the code spending it (innermost known frame):")
    lines.extend(f"  {share(n)}  {name}" for name, n in by_component.most_common())
    lines.append("what each feature costs, inclusive (features overlap):")
    for name, _, split in FEATURES:
        lines.append(f"  {share(by_feature[name])}  {name}")
        if split:
            lines.extend(f"          {share(n)}  {part}" for part, n in detail[name].most_common(8))
    lines.append(f"top {top} functions by own time:")
    lines.extend(f"  {share(n)}  {f} ({p})" for (f, p), n in self_time.most_common(top))
    lines.append(f"top {top} functions by inclusive time (below 90%):")
    below = [(frame, n) for frame, n in inclusive.most_common() if n / total < 0.9]
    lines.extend(f"  {share(n)}  {f} ({p})" for (f, p), n in below[:top])
    return "\n".join(lines)


# --- the run ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    single: int = 200
    direct: int = 100
    long: int = 50
    bare: int = 200
    rest: int = 100
    each_10: int = 20
    each_50: int = 10
    rest_each_10: int = 10
    growth: int = 200
    baseline: int = 200
    profile: int = 200


QUICK = Plan(
    single=40, direct=30, long=15, bare=50, rest=30, each_10=4, each_50=2, rest_each_10=3,
    growth=60, baseline=50, profile=60,
)  # fmt: skip


def verdict(met: bool) -> str:
    return "met" if met else "MISSED"


@dataclass
class Report:
    lines: list[str] = field(default_factory=list)

    def __call__(self, line: str = "") -> None:
        self.lines.append(line)
        print(line, flush=True)


async def growth_phase(
    meter: CpuMeter, device: Device, turns: int
) -> tuple[list[Sample], list[Cpu]]:
    thread = fresh_thread()
    samples, readings = [], [meter.read()]
    for _ in range(turns):
        samples.append(await device_turn(device.client, TYPICAL_MESSAGE, TYPICAL_ANSWER, thread))
        readings.append(meter.read())
    return samples, readings


def window_cpu(readings: list[Cpu], start: int, end: int) -> float:
    """Server + PostgreSQL CPU ms per turn over turns start+1..end (readings[i] = after i)."""
    used = (readings[end].server - readings[start].server) + (
        readings[end].postgres - readings[start].postgres
    )
    return used * 1000 / (end - start)


@dataclass
class Results:
    idle_ms_per_s: float
    one: Phase
    hello: Phase
    story: Phase
    bare_first_ms: float
    bare_total_ms: float
    ten: Phase
    fifty: Phase
    rest_one: Phase
    rest_ten: Phase
    growth: list[Sample]
    growth_cpu: list[Cpu]


async def timed_phases(
    plan: Plan, meter: CpuMeter, devices: list[Device], http: httpx.AsyncClient, api_base: str
) -> Results:
    idle_before = meter.read()
    await asyncio.sleep(2)
    idle_after = meter.read()
    one = await run_phase(meter, [typical(devices[0])], plan.single)
    hello = await run_phase(meter, [direct(devices[0])], plan.direct)
    story = await run_phase(meter, [long(devices[0])], plan.long)
    bare_first, bare_total = await bare_model(api_base, plan.bare)
    ten = await run_phase(meter, [typical(d) for d in devices[:10]], plan.each_10)
    fifty = await run_phase(meter, [typical(d) for d in devices], plan.each_50)
    rest_one = await run_phase(meter, [rest(http, devices[1])], plan.rest)
    rest_ten = await run_phase(meter, [rest(http, d) for d in devices[2:12]], plan.rest_each_10)
    growth, readings = await growth_phase(meter, devices[12], plan.growth)
    return Results(
        idle_ms_per_s=(idle_after.server - idle_before.server) * 1000 / 2,
        one=one,
        hello=hello,
        story=story,
        bare_first_ms=bare_first,
        bare_total_ms=bare_total,
        ten=ten,
        fifty=fifty,
        rest_one=rest_one,
        rest_ten=rest_ten,
        growth=growth,
        growth_cpu=readings,
    )


async def drive(
    args: argparse.Namespace,
    plan: Plan,
    server: ServerProcess,
    meter: CpuMeter,
    api_base: str,
    workdir: Path,
) -> tuple[Results | None, Path | None]:
    """Desktops and a warm-up, the timed phases, then (with --profile) the sampled turns."""
    assert server.process is not None
    devices = await make_devices(server.base_url, workdir, 50, "device")
    limits = httpx.Limits(max_connections=100, max_keepalive_connections=100)
    results, profile_path = None, None
    async with httpx.AsyncClient(
        base_url=server.base_url, timeout=TURN_TIMEOUT_S, limits=limits
    ) as http:
        await asyncio.gather(*(typical(d)() for d in devices))  # every desktop once
        for _ in range(5):
            await direct(devices[0])()
            await rest(http, devices[0])()
        await asyncio.sleep(1)  # the warm-up's memory writes
        if not args.only_profile:
            results = await timed_phases(plan, meter, devices, http, api_base)
        if args.profile:
            profile_path = Path(args.profile) / "server.raw"
            with sampling(server.process.pid, profile_path, args.rate, args.spy_flag):
                await run_phase(meter, [typical(devices[13])], plan.profile)
    for device in devices:
        await device.client.close()
    return results, profile_path


@dataclass(frozen=True)
class Baseline:
    """The in-process figures (`benchmarks.turn.measure`), in ms."""

    fake_p50: float
    fake_p99: float
    litellm_p50: float
    litellm_cpu: float
    floor_p50: float
    floor_cpu: float
    early: float
    late: float


async def baselines(plan: Plan, api_base: str) -> Baseline:
    """Our graph in-process: with the fake chat model, then with LiteLLM to the scripted model.

    The second is what the graph costs once its model is the real `ChatLiteLLM` over
    loopback, with no server around it (no socket, database, memory or checkpointer).
    """
    fake_p50, fake_p99, _ = await measure(ours, plan.baseline)
    early, late = await thread_growth(plan.growth)
    config = ModelConfig(model=MODEL, api_base=api_base, api_key="bench-key")
    litellm = (chat_model(config, "supervisor"), chat_model(config, "subagent"))
    floor = OpenAIFloor(
        client=openai.AsyncOpenAI(base_url=api_base, api_key="bench-key"),
        model_name=MODEL.split("/")[1],
    )
    litellm_p50, litellm_cpu = await with_models(*litellm, turns=plan.baseline)
    floor_p50, floor_cpu = await with_models(floor, floor, turns=plan.baseline)
    return Baseline(fake_p50, fake_p99, litellm_p50, litellm_cpu, floor_p50, floor_cpu, early, late)


async def with_models(
    supervisor: BaseChatModel, subagent: BaseChatModel, *, turns: int
) -> tuple[float, float]:
    """`benchmarks.turn.measure` of our graph on these models: p50 wall and mean CPU, in ms."""

    def build(_: object) -> Graph:
        return build_supervisors(
            supervisor_model=supervisor,
            subagent_model=subagent,
            checkpointer=None,
            max_messages=40,
        ).home

    await measure(build, 5)  # LiteLLM's first calls import and cache a lot
    started = time.process_time()
    p50, _, _ = await measure(build, turns)
    return p50, (time.process_time() - started) * 1000 / (turns + 1)


async def run(args: argparse.Namespace) -> None:
    plan = QUICK if args.quick else Plan()
    say = Report()
    workdir = Path(args.workdir)
    with llm_process() as (api_base, llm):
        # The in-process figures first, while nothing else runs.
        base = None if args.only_profile else await baselines(plan, api_base)
        env = {
            "LLM_MODEL": MODEL,
            "LLM_API_BASE": api_base,
            "LLM_API_KEY": "bench-key",
            "EMBEDDING_MODEL": EMBEDDING_MODEL,
            "EMBEDDING_API_BASE": api_base,
            "EMBEDDING_API_KEY": "bench-key",
            # Each desktop sends far more than 100 requests a minute here, each user more
            # than their plan's, and every account registers from one address.
            "WS_MESSAGES_PER_MINUTE": "1000000",
            "RATE_LIMIT_FREE": "1000000",
            "RATE_LIMIT_ANONYMOUS": "1000000",
            "ACCESS_TOKEN_TTL_S": "7200",
        }
        env.update(dict(item.split("=", 1) for item in args.server_env))
        server = ServerProcess(data_dir=workdir / "var", env=env)
        await asyncio.to_thread(server.start)
        assert server.process is not None
        try:
            meter = CpuMeter(server.process.pid, workdir / "var" / "postgres", llm)
            results, profile_path = await drive(args, plan, server, meter, api_base, workdir)
        finally:
            await asyncio.to_thread(server.stop)
    if results is not None and base is not None:
        again_p50, _, _ = await measure(ours, plan.baseline)  # the machine's drift
        report(say, plan, results, base, again_p50)
    if profile_path is not None:
        say(profile_report(profile_path, plan.profile))
    if args.workdir_kept:
        print(f"(server log and data: {workdir})")


def report(say: Report, plan: Plan, r: Results, base: Baseline, again_p50: float) -> None:
    # Measured before and after the server phases; the lower is the baseline (noise only adds).
    base_p50 = min(base.fake_p50, again_p50)
    say(
        "server turn: python -m app serve, device socket, LiteLLM -> scripted zero-latency model "
        "(own process), PostgreSQL checkpointer, memory + embeddings, encryption, tag filter"
    )
    say(
        f"in-process graph, fake chat model (benchmarks.turn.measure, same run): p50 "
        f"{base.fake_p50:.1f} ms  p99 {base.fake_p99:.1f} ms ({plan.baseline} turns; "
        f"{again_p50:.1f} ms again at the end; baseline {base_p50:.1f} ms)"
    )
    say(
        f"in-process graph, the server's ChatLiteLLM models (sub-agents not streamed) to the "
        f"scripted model, no server: p50 "
        f"{base.litellm_p50:.1f} ms wall, {base.litellm_cpu:.1f} ms CPU per turn"
    )
    say(
        f"in-process graph, a bare BaseChatModel on openai.AsyncOpenAI (no LiteLLM, all "
        f"calls streamed): p50 "
        f"{base.floor_p50:.1f} ms wall, {base.floor_cpu:.1f} ms CPU per turn"
    )
    say(f"server idle: {r.idle_ms_per_s:.1f} ms CPU per second")
    one, cpu = r.one, r.one.cpu
    total_ms = (cpu.server + cpu.postgres) * 1000
    bound = min(50.0, 4 * base_p50)
    lat, first = one.latency(), one.first_text()
    say(f"one typical turn, one device, {one.turns} turns (fresh thread each), lost {one.lost}")
    say(
        f"  server CPU per turn : server {cpu.server * 1000:5.1f} ms + PostgreSQL "
        f"{cpu.postgres * 1000:4.1f} ms = {total_ms:5.1f} ms  (target <= 50 ms and <= 4x "
        f"in-process = {4 * base_p50:.1f} ms: {verdict(total_ms <= bound)}; "
        f"now {total_ms / base_p50:.1f}x in-process)"
    )
    say(
        f"                        the graph with ChatLiteLLM alone (in-process) "
        f"{base.litellm_cpu:.1f} ms; the rest (socket, memory, embeddings, checkpointer, "
        f"database) {total_ms - base.litellm_cpu:.1f} ms"
    )
    say(
        f"  latency             : p50 {lat.p50:5.1f} ms  p99 {lat.p99:5.1f} ms  "
        f"(target p50 <= 60 ms: {verdict(lat.p50 <= 60)}; in-process p50 {base_p50:.1f} ms)"
    )
    model_share = 3 * r.bare_total_ms + r.bare_first_ms
    say(
        f"  first stream_text   : p50 {first.p50:5.1f} ms  p99 {first.p99:5.1f} ms  (the model's "
        f"own time before it, 3 calls + first token: {model_share:.1f} ms)"
    )
    say(f"  load generator CPU  : {cpu.load * 1000:5.1f} ms per turn (devclient + scripted model)")
    hello = r.hello
    hello_lat, hello_first = hello.latency(), hello.first_text()
    added = hello_first.p50 - r.bare_first_ms
    say(
        f"one direct answer (supervisor only, 1 model call), {hello.turns} turns, lost {hello.lost}"
    )
    say(
        f"  first stream_text   : p50 {hello_first.p50:5.1f} ms  p99 {hello_first.p99:5.1f} ms; "
        f"the bare model's first token p50 {r.bare_first_ms:.2f} ms (whole call "
        f"{r.bare_total_ms:.2f} ms)"
    )
    say(
        f"  added by the server : {added:5.1f} ms at p50  (target <= 10 ms: {verdict(added <= 10)})"
    )
    say(
        f"  latency p50 {hello_lat.p50:.1f} ms  p99 {hello_lat.p99:.1f} ms; CPU per turn: server "
        f"{hello.cpu.server * 1000:.1f} ms + PostgreSQL {hello.cpu.postgres * 1000:.1f} ms"
    )
    story, chunks = r.story, LONG_CHUNKS - len(DIRECT_ANSWER) // 4
    per_chunk = (story.cpu.server - hello.cpu.server) * 1e6 / chunks
    say(
        f"one long answer ({LONG_CHUNKS} chunks of 4 characters, 1 model call), {story.turns} "
        f"turns, lost {story.lost}: latency p50 {story.latency().p50:.1f} ms; server CPU per "
        f"turn {story.cpu.server * 1000:.1f} ms: {per_chunk:.0f} us per streamed chunk"
    )
    say("concurrent devices (one user each, typical turns back to back, fresh threads)")
    for label, phase in (("10", r.ten), ("50", r.fifty)):
        stats = phase.latency()
        rate = phase.turns / phase.wall_s
        total = (phase.cpu.server + phase.cpu.postgres) * 1000
        slow = phase.slower_than(SLOW_TURN_S)
        target = (
            f"target >= 25 turns/s: {verdict(rate >= 25)}"
            if label == "10"
            else f"target none over 5 s, none lost: {verdict(slow == 0 and phase.lost == 0)}"
        )
        say(f"  {label} devices: {phase.turns} turns in {phase.wall_s:.1f} s = {rate:.1f} turns/s")
        say(
            f"    latency p50 {stats.p50:6.1f} ms  p99 {stats.p99:6.1f} ms  "
            f"max {stats.max:6.1f} ms; over {SLOW_TURN_S:.0f} s: {slow}; lost: {phase.lost}  "
            f"({target})"
        )
        say(f"    CPU per turn: server {phase.cpu.server * 1000:.1f} ms + PostgreSQL "
            f"{phase.cpu.postgres * 1000:.1f} ms = {total:.1f} ms")  # fmt: skip
    say("REST POST /chat (typical turn, tools on the user's desktop, the user's one REST thread)")
    for label, phase in (("1 client  ", r.rest_one), ("10 clients", r.rest_ten)):
        stats = phase.latency()
        total = (phase.cpu.server + phase.cpu.postgres) * 1000
        say(
            f"  {label}: {phase.turns} turns, {phase.turns / phase.wall_s:.1f} turns/s, latency "
            f"p50 {stats.p50:.1f} ms p99 {stats.p99:.1f} ms, lost {phase.lost}; CPU per turn "
            f"server {phase.cpu.server * 1000:.1f} ms + PostgreSQL "
            f"{phase.cpu.postgres * 1000:.1f} ms = {total:.1f} ms"
        )
    growth, n = r.growth, len(r.growth)
    early = statistics.median(s.latency_ns for s in growth[5:15]) / 1e6
    late = statistics.median(s.latency_ns for s in growth[-10:]) / 1e6
    lost = sum(1 for s in growth if not s.ok)
    say(f"one thread growing over {n} turns (one device, history bounded), lost {lost}")
    say(
        f"  p50 near turn 10 {early:.1f} ms, near turn {n} {late:.1f} ms: {late / early - 1:+.0%} "
        f"(target within +10%: {verdict(late <= early * 1.1)})"
    )
    say(
        f"  CPU per turn (server + PostgreSQL) near turn 10 {window_cpu(r.growth_cpu, 5, 15):.1f} "
        f"ms, near turn {n} {window_cpu(r.growth_cpu, n - 10, n):.1f} ms"
    )
    say(
        f"  in-process, InMemorySaver (benchmarks.turn.thread_growth): near turn 2 "
        f"{base.early:.1f} ms, near turn {plan.growth} {base.late:.1f} ms: "
        f"{base.late / base.early - 1:+.0%}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a short run (about a minute)")
    parser.add_argument("--profile", metavar="DIR", help="also sample the server with py-spy")
    parser.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    parser.add_argument(
        "--server-env", action="append", default=[], metavar="KEY=VALUE", help="server setting"
    )
    parser.add_argument(
        "--spy-flag", action="append", default=[], help="extra py-spy flag (--nonblocking, --idle)"
    )
    parser.add_argument(
        "--only-profile", action="store_true", help="with --profile: skip the timed phases"
    )
    parser.add_argument(
        "--workdir", help="the server's data and log, kept (default: a temporary directory)"
    )
    parser.add_argument("--analyse", metavar="RAW", help="print the profile of a py-spy raw file")
    parser.add_argument("--serve-llm", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_llm:
        uvloop.run(serve_llm())  # the load generator's model: as light as it gets
    elif args.analyse:
        print(profile_report(Path(args.analyse)))
    else:
        keep = args.workdir_kept = args.workdir is not None
        args.workdir = args.workdir or tempfile.mkdtemp(prefix="server-turn-")
        Path(args.workdir).mkdir(parents=True, exist_ok=True)
        if args.profile:
            Path(args.profile).mkdir(parents=True, exist_ok=True)
        try:
            asyncio.run(run(args))
        finally:
            if not keep:  # the database of a full run is ~140 MB
                shutil.rmtree(args.workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
