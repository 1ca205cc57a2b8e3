"""MCP servers as tool sources, against real servers (tests/mcp_test_server.py and
examples/mcp_demo_server.py, in their own processes) over stdio and streamable HTTP:
listing, calls, structured and error results, progress, cancel, a crash, a server that
never starts, clashing names, filters, approval from annotations, configuration.

Every wait is on a condition with a deadline: a loaded machine takes seconds to start
a Python server, so nothing here depends on how fast it is (benchmarks/mcp_cancel.py
measures the cancel's latency).
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from agentkit_jupyter.core import Agent, CancellationToken, tool
from agentkit_jupyter.core.control import RunControl
from agentkit_jupyter.core.events import EventType, StepEvent
from agentkit_jupyter.core.mcp import (
    MCPServer,
    MCPServerError,
    configure_servers,
    configured_servers,
    open_sources,
)
from agentkit_jupyter.core.scripted import ScriptContext, ScriptedGateway, ScriptedTurn
from agentkit_jupyter.core.tool_output import ToolStream, bind
from agentkit_jupyter.core.tools import ToolArgumentError, schema_tool

TESTS = Path(__file__).parent
TEST_SERVER = TESTS / "mcp_test_server.py"
DEMO_SERVER = TESTS.parent / "examples" / "mcp_demo_server.py"
START = 90.0  # seconds a server may take to start on a loaded machine
pytestmark = pytest.mark.timeout(300)


def stdio(*args: str, **options: Any) -> MCPServer:
    options.setdefault("name", "testing")
    options.setdefault("startup_timeout", START)
    return MCPServer(command=[sys.executable, str(TEST_SERVER), *args], **options)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(condition: Callable[[], Any], timeout: float = 30.0, what: str = "it") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def records(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


class HttpServer:
    """tests/mcp_test_server.py serving streamable HTTP on 127.0.0.1."""

    def __init__(self, directory: Path, name: str = "web") -> None:
        self.port = free_port()
        self.record = directory / f"record-{self.port}.jsonl"
        self.url = f"http://127.0.0.1:{self.port}/mcp"
        self.proc = subprocess.Popen(
            [sys.executable, str(TEST_SERVER), "--name", name, "--http", str(self.port)]
            + ["--record", str(self.record)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def wait_ready(self) -> HttpServer:
        def listening() -> bool:
            assert self.proc.poll() is None, "the HTTP test server exited"
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
            except OSError:
                return False
            return True

        wait_for(listening, START, "the HTTP test server")
        return self

    def server(self, **options: Any) -> MCPServer:
        options.setdefault("name", "testing")
        options.setdefault("startup_timeout", START)
        return MCPServer(url=self.url, **options)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


@pytest.fixture(scope="module")
def mcp_http(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HttpServer]:
    server = HttpServer(tmp_path_factory.mktemp("mcp-http")).wait_ready()
    yield server
    server.stop()


@pytest.fixture(params=["stdio", "http"])
def make_server(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[Callable[..., MCPServer]]:
    """A server of the test script, over one transport or the other."""
    if request.param == "stdio":
        yield lambda **options: stdio("--record", str(tmp_path / "record.jsonl"), **options)
    else:
        http: HttpServer = request.getfixturevalue("mcp_http")
        yield http.server


def run(
    agent: Agent,
    question: str = "go",
    token: CancellationToken | None = None,
    control: RunControl | None = None,
    on_event: Callable[[StepEvent], None] | None = None,
) -> list[StepEvent]:
    async def main() -> list[StepEvent]:
        events = []
        async for event in agent.stream(question, token, control):
            events.append(event)
            if on_event is not None:
                on_event(event)
        return events

    return asyncio.run(main())


def of(events: list[StepEvent], kind: EventType) -> list[dict[str, Any]]:
    return [e.data for e in events if e.event_type is kind]


def scripted(*turns: ScriptedTurn | Callable[[ScriptContext], ScriptedTurn]) -> ScriptedGateway:
    return ScriptedGateway(list(turns))


# -- listing -------------------------------------------------------------------------


def test_the_listing_has_schemas_descriptions_and_approval_from_annotations(
    make_server: Callable[..., MCPServer],
) -> None:
    async def main() -> dict[str, Any]:
        opened = await open_sources([make_server()])
        try:
            assert opened.notes == []
            return opened.tools
        finally:
            await opened.aclose()

    tools = asyncio.run(main())
    assert {"echo", "stats", "fail", "picture", "slow", "crash", "search"} <= set(tools)
    # A name the model would refuse is made to fit (and the call goes to the real one).
    assert "admin_list-users" in tools and "admin.list-users" not in tools
    assert tools["echo"].description == "Say the text back."
    schema = tools["stats"].parameters_schema
    assert schema["type"] == "object" and schema["required"] == ["numbers"]
    assert schema["properties"]["numbers"]["type"] == "array"
    assert "title" not in schema
    # destructiveHint asks a person; readOnlyHint (even beside a destructive hint) and
    # no annotations at all do not.
    approval = {name: t.requires_approval for name, t in tools.items()}
    assert approval["drop_table"] is True and approval["wipe_disk"] is True
    assert approval["peek"] is False and approval["echo"] is False
    assert approval["fail"] is False


def test_list_tools_shows_what_a_run_would_see() -> None:
    tools = asyncio.run(stdio(include=["echo", "stats"]).list_tools())
    assert sorted(t.name for t in tools) == ["echo", "stats"]
    with pytest.raises(MCPServerError, match="command not found"):
        asyncio.run(MCPServer(command=["/nonexistent/agentkit-mcp-server"]).list_tools())


# -- calls ---------------------------------------------------------------------------


def test_calls_text_structured_error_image_and_invalid_arguments(
    make_server: Callable[..., MCPServer],
) -> None:
    agent = Agent(
        "caller",
        scripted(
            ScriptedTurn(
                "Calling.",
                [
                    ("echo", {"text": "héllo"}),
                    ("stats", {"numbers": [1, 2, 3]}),
                    ("fail", {"message": "the disk is on fire"}),
                    ("picture", {}),
                    ("stats", {"numbers": "many"}),
                    ("admin_list-users", {}),
                ],
            ),
            ScriptedTurn("Done."),
        ),
        tools=[make_server()],
    )
    events = run(agent)
    assert events[-1].event_type is EventType.FINAL_ANSWER, events[-1].data
    observations = {o["call_id"]: o for o in of(events, EventType.OBSERVATION)}
    echo, stats, fail, picture, invalid, users = (observations[f"call_0_{n}"] for n in range(6))
    assert echo["output"] == "héllo" and not echo["is_error"]
    assert json.loads(stats["output"]) == {"count": 3, "sum": 6, "mean": 2}
    assert fail["is_error"] and fail["error_code"] == "tool_error"
    assert "the disk is on fire" in fail["output"]
    assert picture["output"] == "a red pixel\n[image: image/png, 67 B]"
    # Checked against the tool's JSON schema here: the server never sees the call.
    assert invalid["is_error"] and invalid["error_code"] == "invalid_arguments"
    assert "numbers: 'many' is not of type 'array'" in invalid["output"]
    assert users["output"] == "alice, bob"


def test_progress_notifications_are_tool_progress_steps_in_order(
    make_server: Callable[..., MCPServer],
) -> None:
    agent = Agent(
        "progress",
        scripted(
            ScriptedTurn("Slowly.", [("slow", {"steps": 6, "delay": 0.01})]),
            ScriptedTurn("Done."),
        ),
        tools=[make_server()],
    )
    events = run(agent)
    assert events[-1].event_type is EventType.FINAL_ANSWER, events[-1].data
    progress = of(events, EventType.TOOL_PROGRESS)
    assert [p["progress"] for p in progress] == [1, 2, 3, 4, 5, 6]
    assert {(p["call_id"], p["name"], p["total"]) for p in progress} == {("call_0_0", "slow", 6)}
    assert progress[0]["message"] == "step 1 of 6"
    kinds = [e.event_type for e in events]
    last_progress = max(i for i, k in enumerate(kinds) if k is EventType.TOOL_PROGRESS)
    assert kinds.index(EventType.OBSERVATION) > last_progress
    assert of(events, EventType.OBSERVATION)[0]["output"] == "finished 6 steps"


# -- cancel --------------------------------------------------------------------------


def test_a_cancelled_call_is_cancelled_on_the_server(
    make_server: Callable[..., MCPServer],
) -> None:
    """The session stays open after the cancel, so what the server saw is asked over
    it: the cancel reached the server, not the session's end."""

    async def main() -> tuple[float, list[dict[str, Any]]]:
        opened = await open_sources([make_server()])
        try:
            loop = asyncio.get_running_loop()
            progressed = asyncio.Event()
            stream = ToolStream("c1", "slow", 1, loop, lambda _event: progressed.set())

            async def call() -> Any:
                bind(stream)
                return await opened.tools["slow"].func(steps=100_000, delay=0.05)

            job = asyncio.create_task(call())
            await asyncio.wait_for(progressed.wait(), START)  # the server is in the call
            cancelled_at = time.time()
            job.cancel()
            with pytest.raises(asyncio.CancelledError):
                await job
            seen: list[dict[str, Any]] = []
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                seen = json.loads(await opened.tools["cancellations"].func())
                seen = [r for r in seen if r["time"] >= cancelled_at - 1]
                if any(r["kind"] == "call_cancelled" for r in seen):
                    break
                await asyncio.sleep(0.05)
            return cancelled_at, seen
        finally:
            await opened.aclose()

    cancelled_at, seen = asyncio.run(main())
    assert any(r["kind"] == "call_cancelled" for r in seen), seen
    # Behaviour, not speed (benchmarks/mcp_cancel.py measures it): within seconds.
    assert min(r["time"] for r in seen) - cancelled_at < 10


def test_a_cancelled_run_sends_notifications_cancelled(tmp_path: Path) -> None:
    record = tmp_path / "record.jsonl"
    token = CancellationToken()
    agent = Agent(
        "cancelled",
        scripted(ScriptedTurn("Slowly.", [("slow", {"steps": 100_000, "delay": 0.05})])),
        tools=[stdio("--record", str(record))],
    )

    def on_event(event: StepEvent) -> None:
        if event.event_type is EventType.TOOL_PROGRESS:
            token.cancel("user")

    events = run(agent, token=token, on_event=on_event)
    cancelled = events[-1]
    assert cancelled.event_type is EventType.CANCELLED
    assert cancelled.data["interrupted"] == "tool_calls" and cancelled.data["tools"] == ["slow"]
    assert "Nothing is left running" in cancelled.data["message"]
    got = wait_for(
        lambda: [r for r in records(record) if r["kind"] == "notification"],
        30,
        "the server's record of notifications/cancelled",
    )
    assert got[0]["reason"]  # the SDK says why


# -- failures ------------------------------------------------------------------------


def test_a_server_that_crashes_mid_call(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="agentkit_jupyter.mcp")
    agent = Agent(
        "crashing",
        scripted(
            ScriptedTurn("Crash it.", [("crash", {})]),
            ScriptedTurn("Once more.", [("echo", {"text": "still there?"})]),
            lambda ctx: ScriptedTurn(f"Seen: {ctx.observations[-1][:40]}"),
        ),
        tools=[stdio()],
    )
    events = run(agent)
    assert events[-1].event_type is EventType.FINAL_ANSWER, events[-1].data
    crash, later = of(events, EventType.OBSERVATION)
    assert crash["is_error"] and crash["error_code"] == "tool_error"
    assert (
        "MCP server 'testing' is gone: it closed the connection during a call of crash"
        in (crash["output"])
    )
    assert "exited or crashed" in crash["output"]
    # Later calls of its tools fail at once, the same way.
    assert later["is_error"] and "MCP server 'testing' is gone" in later["output"]
    assert later["duration_ms"] < 1000
    assert of(events, EventType.TOOL_PROGRESS)[0]["message"] == "about to crash"
    # Its stderr is in the Python log, and in no event.
    wait_for(lambda: "crashing on purpose" in caplog.text, 30, "the server's stderr in the log")
    assert not any("crashing on purpose" in json.dumps(e.data) for e in events)


def test_an_http_server_that_goes_away_mid_call(tmp_path: Path) -> None:
    http = HttpServer(tmp_path, name="fragile").wait_ready()
    try:

        def on_event(event: StepEvent) -> None:
            if event.event_type is EventType.TOOL_PROGRESS and event.data["progress"] == 1:
                http.proc.kill()  # gone at once, in the middle of the call
                http.proc.wait(10)

        agent = Agent(
            "fragile",
            scripted(
                ScriptedTurn("Slowly.", [("slow", {"steps": 100_000, "delay": 0.05})]),
                ScriptedTurn("Again.", [("echo", {"text": "x"})]),
                ScriptedTurn("Done."),
            ),
            tools=[http.server(name="fragile")],
        )
        events = run(agent, on_event=on_event)
    finally:
        http.stop()
    assert events[-1].event_type is EventType.FINAL_ANSWER, events[-1].data
    slow, later = of(events, EventType.OBSERVATION)
    assert slow["is_error"] and "MCP server 'fragile' is gone" in slow["output"]
    assert later["is_error"] and "MCP server 'fragile' is gone" in later["output"]


@pytest.mark.parametrize(
    ("command", "reason"),
    [
        (["/nonexistent/agentkit-mcp-server"], "command not found: /nonexistent"),
        ([sys.executable, "-c", "import sys; sys.exit(3)"], "exited or closed its output"),
    ],
)
def test_a_server_that_never_starts_leaves_the_run_going(
    command: list[str], reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    seen: list[list[dict[str, Any]]] = []

    def first(ctx: ScriptContext) -> ScriptedTurn:
        seen.append([dict(m) for m in ctx.messages])
        return ScriptedTurn("I use what I have.", [("double", {"n": 21})])

    @tool
    def double(n: int) -> int:
        """Twice n."""
        return 2 * n

    agent = Agent(
        "partial",
        scripted(first, lambda ctx: ScriptedTurn(f"It is {ctx.observations[-1]}.")),
        tools=[double, MCPServer(command=command, name="broken", startup_timeout=START)],
    )
    with caplog.at_level(logging.WARNING, logger="agentkit_jupyter.mcp"):
        events = run(agent)
    assert events[-1].event_type is EventType.FINAL_ANSWER
    assert events[-1].data["output"] == "It is 42."
    notes = [m["content"] for m in seen[0] if m["role"] == "system"]
    assert len(notes) == 1 and "MCP server 'broken' are not available" in notes[0]
    assert reason in notes[0]
    assert "left out of the run" in caplog.text and reason in caplog.text


def test_a_server_that_does_not_answer_in_time(tmp_path: Path) -> None:
    silent = MCPServer(
        command=[sys.executable, "-c", "import time; time.sleep(600)"],
        name="silent",
        startup_timeout=1.0,
    )

    async def main() -> list[str]:
        opened = await open_sources([silent])
        await opened.aclose()
        return opened.notes

    started = time.monotonic()
    notes = asyncio.run(main())
    assert "did not start within 1 s" in notes[0]
    assert time.monotonic() - started < 60  # the process was stopped, not waited for


def test_a_cancel_while_servers_start_ends_the_run_cancelled() -> None:
    token = CancellationToken()
    agent = Agent(
        "impatient",
        scripted(ScriptedTurn("Never asked.")),
        tools=[MCPServer(command=[sys.executable, "-c", "import time; time.sleep(600)"])],
    )

    async def main() -> list[StepEvent]:
        asyncio.get_running_loop().call_later(0.5, token.cancel, "user")
        return [e async for e in agent.stream("go", token)]

    started = time.monotonic()
    events = asyncio.run(main())
    assert events[-1].event_type is EventType.CANCELLED
    assert [e.event_type for e in events] == [EventType.CANCELLED]
    assert time.monotonic() - started < 60


# -- names and filters ---------------------------------------------------------------


def test_two_servers_with_the_same_tool_names_are_namespaced(
    mcp_http: HttpServer,
) -> None:
    @tool
    def echo(text: str) -> str:
        """The agent's own echo: it keeps its name."""
        return f"own {text}"

    agent = Agent(
        "two",
        scripted(
            ScriptedTurn(
                "Both.",
                [
                    ("alpha__search", {"query": "x"}),
                    ("web__search", {"query": "y"}),
                    ("echo", {"text": "z"}),
                    ("alpha__echo", {"text": "w"}),
                    ("only", {"text": "v"}),
                ],
            ),
            ScriptedTurn("Done."),
        ),
        tools=[
            echo,
            stdio("--name", "alpha", name="alpha"),
            mcp_http.server(name="web"),
            # prefix=True: prefixed whether or not its names clash.
            stdio("--name", "gamma", name="gamma", include=["stats"], prefix=True),
        ],
    )
    events = run(agent)
    outputs = {o["name"]: o for o in of(events, EventType.OBSERVATION)}
    assert outputs["alpha__search"]["output"] == "alpha found 'x'"
    assert outputs["web__search"]["output"] == "web found 'y'"
    assert outputs["echo"]["output"] == "own z"
    assert outputs["alpha__echo"]["output"] == "w"
    assert outputs["only"]["error_code"] == "unknown_tool"
    available = outputs["only"]["output"].split("Available tools: ")[1].rstrip(".").split(", ")
    assert {"gamma__stats", "alpha__stats", "web__stats", "web__echo", "echo"} <= set(available)
    assert "search" not in available and "stats" not in available


def test_include_and_exclude_filter_by_the_servers_names() -> None:
    async def names(server: MCPServer) -> list[str]:
        opened = await open_sources([server])
        try:
            return sorted(opened.tools)
        finally:
            await opened.aclose()

    async def main() -> tuple[list[str], list[str]]:
        return await asyncio.gather(
            names(stdio(include=["s*", "echo"], exclude=["slow"])),
            names(stdio(exclude=["*"])),
        )

    included, nothing = asyncio.run(main())
    assert included == ["echo", "search", "stats"]
    assert nothing == []


# -- approval ------------------------------------------------------------------------


def test_approval_from_annotations_and_its_overrides() -> None:
    async def approvals(server: MCPServer) -> dict[str, Any]:
        opened = await open_sources([server])
        try:
            return {n: t.requires_approval for n, t in opened.tools.items()}
        finally:
            await opened.aclose()

    async def main() -> list[dict[str, Any]]:
        return list(
            await asyncio.gather(
                approvals(stdio(approval="never")),
                approvals(stdio(approval="always")),
                approvals(stdio(approval={"drop_table": False, "echo": True})),
            )
        )

    never, always, mapping = asyncio.run(main())
    assert not any(never.values())
    assert all(v is True for v in always.values())
    assert mapping["drop_table"] is False and mapping["echo"] is True
    assert mapping["wipe_disk"] is True and mapping["stats"] is False


def test_a_destructive_tool_waits_for_a_person(make_server: Callable[..., MCPServer]) -> None:
    control = RunControl()
    agent = Agent(
        "careful",
        scripted(
            ScriptedTurn(
                "Dropping.", [("drop_table", {"table": "orders"}), ("echo", {"text": "hi"})]
            ),
            ScriptedTurn("Done."),
        ),
        tools=[make_server()],
    )

    def on_event(event: StepEvent) -> None:
        if event.event_type is EventType.APPROVAL_REQUESTED:
            control.approve(event.data["call_id"], {"table": "test_orders"}, by="tester")

    events = run(agent, control=control, on_event=on_event)
    (requested,) = of(events, EventType.APPROVAL_REQUESTED)
    assert requested["tool"] == "drop_table" and requested["policy"] == "tool"
    assert requested["schema"]["required"] == ["table"]
    outputs = {o["name"]: o["output"] for o in of(events, EventType.OBSERVATION)}
    assert outputs["drop_table"].endswith("dropped test_orders")  # the edited arguments ran
    assert outputs["echo"] == "hi"
    assert events[-1].event_type is EventType.FINAL_ANSWER


def test_an_edit_is_checked_against_the_json_schema() -> None:
    func_calls: list[dict[str, Any]] = []

    async def func(**arguments: Any) -> str:
        func_calls.append(arguments)
        return "ok"

    built = schema_tool(
        "remote",
        "A remote tool.",
        {
            "type": "object",
            "properties": {"n": {"type": "integer", "minimum": 1}, "tag": {"type": "string"}},
            "required": ["n"],
            "additionalProperties": False,
        },
        func,
    )
    assert built.validate_arguments('{"n": 2, "tag": "x"}') == {"n": 2, "tag": "x"}
    for bad, problem in [
        ({"n": 0}, "n: 0 is less than the minimum of 1"),
        ({"tag": "x"}, "'n' is a required property"),
        ({"n": 1, "other": 1}, "Additional properties are not allowed"),
        ("[1]", "arguments must be a JSON object"),
    ]:
        with pytest.raises(ToolArgumentError, match=problem.replace("(", r"\(")):
            built.validate_arguments(bad if isinstance(bad, str) else json.dumps(bad))
    # A broken schema checks nothing here (the server checks the arguments).
    loose = schema_tool("loose", "", {"type": "no-such-type"}, func)
    assert loose.validate_arguments({"anything": 1}) == {"anything": 1}
    assert loose.parameters_schema == {"type": "no-such-type"}
    with pytest.raises(ValueError, match="must match"):
        schema_tool("bad name", "", {}, func)


# -- agents and configuration --------------------------------------------------------


def test_an_agent_lists_the_server_and_validates_its_plain_tools_at_definition() -> None:
    @tool
    def local() -> str:
        """A plain tool."""
        return "here"

    server = stdio()
    agent = Agent("mixed", scripted(ScriptedTurn("Hi.")), tools=[local, server])
    assert [t.name for t in agent.tool_list] == ["local"]
    assert agent.tool_sources == [server]
    listed = agent.summary()["tools"]
    assert [t["name"] for t in listed] == ["local", "testing (MCP)"]
    assert "listed when a run starts" in listed[1]["description"]
    with pytest.raises(ValueError, match="two tools are named"):
        Agent("dup", scripted(ScriptedTurn("Hi.")), tools=[local, local, server])


def test_server_options_are_checked_when_defined() -> None:
    with pytest.raises(ValueError, match="either command"):
        MCPServer()
    with pytest.raises(ValueError, match="either command"):
        MCPServer(["x"], url="http://127.0.0.1:1/mcp")
    with pytest.raises(ValueError, match="list of arguments"):
        MCPServer("python server.py")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="name"):
        MCPServer(["x"], name="has space")
    with pytest.raises(ValueError, match="headers are for"):
        MCPServer(["x"], headers={"a": "b"})
    with pytest.raises(ValueError, match="approval"):
        MCPServer(["x"], approval="sometimes")  # type: ignore[arg-type]
    assert MCPServer([sys.executable, "servers/files.py"]).name == "files"
    assert MCPServer(["npx", "-y", "@modelcontextprotocol/server-memory"]).name == ("server-memory")
    assert MCPServer(["/usr/local/bin/weather-mcp"]).name == "weather-mcp"
    assert MCPServer(url="https://user:pw@mcp.example.com/mcp").name == "mcp_example_com"
    assert "pw" not in repr(MCPServer(url="https://user:pw@mcp.example.com/mcp"))


def test_named_servers_come_from_the_configuration(tmp_path: Path) -> None:
    problems = configure_servers(
        {
            "files": {"command": [sys.executable, str(TEST_SERVER)], "include": ["echo"]},
            "broken": {"command": "not a list"},
            "odd": {"url": "http://127.0.0.1:1/mcp", "colour": "red"},
        }
    )
    try:
        assert len(problems) == 2
        assert any("command must be a list" in p for p in problems)
        assert any("unknown option(s) colour" in p for p in problems)
        assert [s.name for s in configured_servers()] == ["files"]
        agent = Agent(
            "configured",
            scripted(
                ScriptedTurn("Echo.", [("echo", {"text": "configured"})]),
                ScriptedTurn("Done."),
            ),
            tools=[MCPServer.named("files", startup_timeout=START), MCPServer.named("nothing")],
        )
        assert [t["name"] for t in agent.summary()["tools"]] == ["files (MCP)", "nothing (MCP)"]
        events = run(agent)
        assert of(events, EventType.OBSERVATION)[0]["output"] == "configured"
        assert events[-1].event_type is EventType.FINAL_ANSWER
    finally:
        configure_servers({})


def test_http_headers_reach_the_server(mcp_http: HttpServer) -> None:
    async def main() -> str:
        opened = await open_sources([mcp_http.server(headers={"X-Agentkit-Test": "s3cret"})])
        try:
            return str(await opened.tools["header"].func(name="x-agentkit-test"))
        finally:
            await opened.aclose()

    assert asyncio.run(main()) == "s3cret"


def test_the_demo_server_over_stdio() -> None:
    shop = MCPServer(command=[sys.executable, str(DEMO_SERVER)], startup_timeout=START)
    control = RunControl()
    agent = Agent(
        "shop",
        scripted(
            ScriptedTurn(
                "Look.",
                [("list_tables", {}), ("query", {"sql": "SELECT COUNT(*) AS n FROM orders"})],
            ),
            ScriptedTurn("Report.", [("revenue_report", {"delay": 0.01})]),
            ScriptedTurn("Clean.", [("delete_orders", {"status": "test"})]),
            ScriptedTurn("Check.", [("query", {"sql": "DELETE FROM orders"})]),
            ScriptedTurn("Done."),
        ),
        tools=[shop],
    )

    def on_event(event: StepEvent) -> None:
        if event.event_type is EventType.APPROVAL_REQUESTED:
            control.approve(event.data["call_id"], by="tester")

    events = run(agent, control=control, on_event=on_event)
    assert events[-1].event_type is EventType.FINAL_ANSWER, events[-1].data
    tables, count, report, deleted, refused = of(events, EventType.OBSERVATION)
    assert set(json.loads(tables["output"])) == {"products", "orders"}
    assert json.loads(count["output"]) == [{"n": 9}]  # unwrapped from {"result": ...}
    assert json.loads(report["output"]) == {"AMER": 1300.0, "APAC": 1730.0, "EMEA": 1680.0}
    assert [p["progress"] for p in of(events, EventType.TOOL_PROGRESS)] == [1, 2, 3]
    assert [a["tool"] for a in of(events, EventType.APPROVAL_REQUESTED)] == ["delete_orders"]
    assert deleted["output"] == "Deleted 2 order(s) with status 'test'."
    assert refused["is_error"] and "readonly" in refused["output"]


# -- on the Jupyter server -----------------------------------------------------------


@pytest.fixture
def agentkit_config() -> dict[str, Any]:
    return {
        "agents": ["support:test_agents", "mcp_agents:agents"],
        "llm_base_url": "http://127.0.0.1:9/v1",  # never called: its agent is only listed
        "mcp_servers": {
            "files": {
                "command": [sys.executable, str(TEST_SERVER)],
                "include": ["echo"],
                "startup_timeout": START,
                "env": {"FILES_API_TOKEN": "mcp-secret-value-0042"},
            },
            "broken": {"command": "not a list"},
        },
    }


async def test_configured_servers_on_the_jupyter_server(api: Any) -> None:
    try:
        status, body = await api("GET", "agents")
        assert status == 200
        agents = {a["name"]: a for a in body["agents"]}
        assert [t["name"] for t in agents["mcp-files"]["tools"]] == ["files (MCP)"]
        assistant_tools = [t["name"] for t in agents["assistant"]["tools"]]
        assert assistant_tools == ["lookup_city", "calculator", "files (MCP)"]

        status, created = await api("POST", "tasks", body={"agent": "mcp-files", "input": "hi"})
        assert status == 201
        async with asyncio.timeout(START + 60):
            while True:
                _, task = await api("GET", "tasks", created["task_id"])
                if task["status"] in ("succeeded", "failed", "cancelled"):
                    break
                await asyncio.sleep(0.05)
        assert task["status"] == "succeeded", task
        # The run went through the server's own MCP session, and the configured
        # credential is redacted from what it recorded.
        assert task["result"]["output"] == "The server said: hello [secret]"
        assert "mcp-secret-value-0042" not in json.dumps(task)
    finally:
        configure_servers({})
