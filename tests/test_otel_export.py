"""OpenTelemetry export against a real OTLP/HTTP receiver on loopback and a real Jupyter
server: the span tree, attributes and links of the demo run, a cancelled run, a failed
tool, a fork and a kernel-published run; content only on request; secrets never; a dead
collector costs a warning, not the run; back-fill over REST and the CLI."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from otlp_receiver import OTLPReceiver
from test_kernel_agents import kernel  # noqa: F401 - the fixture
from websockets.asyncio.client import connect

from agentkit_jupyter.core import Agent, AgentPool, ScriptedGateway, ScriptedTurn, demo_agents, tool
from agentkit_jupyter.tasks import TaskHub, TaskStore

API_KEY = "otel-test-api-key-0123456789"
OTLP_SECRET = "Basic b3RlbC10ZXN0LXVzZXI6b3RlbC1zZWNyZXQ="


@tool
def flaky_lookup(city: str) -> str:
    """Look a city up in a table that is down.

    Args:
        city: The city.
    """
    raise ConnectionError(f"the table of {city} is down")


def failing_tool_agent() -> Agent:
    return Agent(
        "otel-flaky",
        ScriptedGateway(
            [
                ScriptedTurn("Looking Paris up.", [("flaky_lookup", {"city": "Paris"})]),
                ScriptedTurn("The table is down; I cannot say."),
            ]
        ),
        tools=[flaky_lookup],
    )


@pytest.fixture
def receiver() -> Iterator[OTLPReceiver]:
    server = OTLPReceiver().start()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def otel_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Batches leave within 50 ms (the default waits 5 s); nothing else of OTel set."""
    for name in list(os.environ):
        if name.startswith("OTEL_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "50")


@pytest.fixture
def agentkit_config(receiver: OTLPReceiver, otel_env: None) -> dict[str, Any]:
    return {
        "otel_endpoint": receiver.endpoint,
        "otel_headers": {"Authorization": OTLP_SECRET},
        "api_keys": {"robot": {"scope": "write", "key": API_KEY}},
    }


@pytest.fixture
def hub(jp_serverapp: Any) -> TaskHub:
    extension = jp_serverapp.web_app.settings["agentkit"]
    assert extension.otel_exporter is not None
    hub: TaskHub = extension.hub
    hub.agents.register(failing_tool_agent(), replace=True)
    return hub


async def _finished(api: Any, task_id: str, timeout: float = 60) -> dict[str, Any]:
    async with asyncio.timeout(timeout):
        while True:
            _, task = await api("GET", "tasks", task_id, params={"limit": "0"})
            if task["status"] not in ("queued", "running", "waiting", "paused"):
                return dict(task)
            await asyncio.sleep(0.05)


async def _run(api: Any, agent: str, text: str) -> dict[str, Any]:
    status, created = await api("POST", "tasks", body={"agent": agent, "input": text})
    assert status == 201, created
    return await _finished(api, created["task_id"])


def _by_name(spans: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    found: dict[str, list[dict[str, Any]]] = {}
    for span in spans:
        found.setdefault(span["name"], []).append(span)
    return found


def _root(spans: list[dict[str, Any]]) -> dict[str, Any]:
    (root,) = [s for s in spans if s["parent_span_id"] is None]
    return root


CONTENT_KEYS = {
    "gen_ai.input.messages",
    "gen_ai.output.messages",
    "gen_ai.tool.call.arguments",
    "gen_ai.tool.call.result",
}


async def test_the_demo_run_is_a_span_tree_with_the_genai_attributes(
    api: Any, hub: TaskHub, receiver: OTLPReceiver
) -> None:
    task = await _run(api, "demo", "Compare Paris and Rome")
    assert task["status"] == "succeeded"
    spans = await receiver.trace(task["task_id"], count=7)
    names = _by_name(spans)
    root = _root(spans)
    assert root["name"] == "invoke_agent demo"
    assert root["kind"] == "SPAN_KIND_INTERNAL"
    assert root["status"]["code"] == "STATUS_CODE_UNSET"
    attributes = root["attributes"]
    assert attributes["gen_ai.operation.name"] == "invoke_agent"
    assert attributes["gen_ai.agent.name"] == "demo"
    assert attributes["gen_ai.conversation.id"] == task["task_id"]
    assert attributes["gen_ai.provider.name"] == "agentkit.scripted"
    assert attributes["gen_ai.request.model"] == "scripted"
    assert attributes["gen_ai.usage.input_tokens"] == task["tokens_in"] > 0
    assert attributes["gen_ai.usage.output_tokens"] == task["tokens_out"] > 0
    assert root["resource"]["service.name"] == "agentkit-jupyter"
    # Three model turns, three tool calls (two lookups at once, then the calculator).
    assert len(names["chat scripted"]) == 3
    assert (
        sorted(
            s["attributes"]["gen_ai.tool.name"] for s in names.get("execute_tool lookup_city", [])
        )
        == ["lookup_city"] * 2
    )
    assert len(names["execute_tool calculator"]) == 1
    children = [s for s in spans if s is not root]
    assert len(children) == 6
    for span in children:
        assert span["parent_span_id"] == root["span_id"]
        assert span["trace_id"] == root["trace_id"]
        assert root["start_ns"] <= span["start_ns"] <= span["end_ns"] <= root["end_ns"]
        assert span["attributes"]["gen_ai.conversation.id"] == task["task_id"]
        assert span["attributes"]["gen_ai.agent.name"] == "demo"
        assert span["status"]["code"] == "STATUS_CODE_UNSET"
    chats = sorted(names["chat scripted"], key=lambda s: s["start_ns"])
    for chat in chats:
        assert chat["kind"] == "SPAN_KIND_CLIENT"
        assert chat["attributes"]["gen_ai.operation.name"] == "chat"
        assert chat["attributes"]["gen_ai.request.model"] == "scripted"
        assert chat["attributes"]["gen_ai.usage.input_tokens"] > 0
        assert chat["attributes"]["gen_ai.usage.output_tokens"] > 0
    assert sum(c["attributes"]["gen_ai.usage.input_tokens"] for c in chats) == task["tokens_in"]
    assert [c["attributes"]["gen_ai.response.finish_reasons"] for c in chats] == [
        ["tool_calls"],
        ["tool_calls"],
        ["stop"],
    ]
    tools = [s for s in children if s["attributes"]["gen_ai.operation.name"] == "execute_tool"]
    assert {t["attributes"]["gen_ai.tool.call.id"] for t in tools} == {
        "call_0_0",
        "call_0_1",
        "call_1_0",
    }
    for span in tools:
        assert span["kind"] == "SPAN_KIND_INTERNAL"
        assert span["attributes"]["gen_ai.tool.type"] == "function"
    # A tool runs after the model turn that asked for it.
    assert min(t["start_ns"] for t in tools) >= chats[0]["end_ns"]
    # No content by default.
    for span in spans:
        assert not (CONTENT_KEYS & set(span["attributes"])), span["name"]
    # The OTLP requests carried the configured header.
    assert receiver.requests
    for headers in receiver.requests:
        assert {k.lower(): v for k, v in headers.items()}["authorization"] == OTLP_SECRET


async def test_a_cancelled_run_ends_its_spans_with_an_error_status(
    api: Any, hub: TaskHub, receiver: OTLPReceiver
) -> None:
    status, created = await api("POST", "tasks", body={"agent": "demo-slow", "input": "rain"})
    task_id = created["task_id"]
    # Cancel while its first search runs.
    async with asyncio.timeout(30):
        while True:
            _, page = await api("GET", "tasks", task_id)
            if any(
                e["data"]["event_type"] == "tool_call"
                for e in page["events"]
                if e["type"] == "step"
            ):
                break
            await asyncio.sleep(0.05)
    await api("POST", "tasks", task_id, "cancel")
    task = await _finished(api, task_id)
    assert task["status"] == "cancelled"
    spans = await receiver.trace(task_id)
    root = _root(spans)
    assert root["status"]["code"] == "STATUS_CODE_ERROR"
    assert root["status"]["message"].startswith("cancelled")
    assert root["attributes"]["error.type"] == "cancelled"
    assert root["attributes"]["agentkit.task.status"] == "cancelled"
    (search,) = [s for s in spans if s["name"] == "execute_tool slow_search"]
    assert search["status"]["code"] == "STATUS_CODE_ERROR"
    assert search["attributes"]["error.type"] == "cancelled"
    assert search["end_ns"] <= root["end_ns"]
    (chat,) = [s for s in spans if s["name"] == "chat scripted"]
    assert chat["status"]["code"] == "STATUS_CODE_UNSET"  # that model call had finished


async def test_a_failed_tool_is_an_error_span_in_a_run_that_succeeds(
    api: Any, hub: TaskHub, receiver: OTLPReceiver
) -> None:
    task = await _run(api, "otel-flaky", "How many people live in Paris?")
    assert task["status"] == "succeeded"
    spans = await receiver.trace(task["task_id"], count=4)
    (failed,) = [s for s in spans if s["name"] == "execute_tool flaky_lookup"]
    assert failed["status"] == {"code": "STATUS_CODE_ERROR", "message": "tool_error"}
    assert failed["attributes"]["error.type"] == "tool_error"
    assert failed["attributes"]["gen_ai.tool.name"] == "flaky_lookup"
    # Without content capture, the error's text (it names the argument) stays out.
    assert "Paris" not in json.dumps(failed)
    assert _root(spans)["status"]["code"] == "STATUS_CODE_UNSET"


async def test_a_failed_run_is_an_error_on_the_task_and_its_model_call(
    api: Any, hub: TaskHub, receiver: OTLPReceiver
) -> None:
    task = await _run(api, "broken", "hello")
    assert task["status"] == "failed"
    spans = await receiver.trace(task["task_id"], count=2)
    root = _root(spans)
    assert root["status"]["code"] == "STATUS_CODE_ERROR"
    assert root["attributes"]["error.type"] == "llm_error"
    (chat,) = [s for s in spans if s["attributes"]["gen_ai.operation.name"] == "chat"]
    assert chat["status"]["code"] == "STATUS_CODE_ERROR"
    assert chat["attributes"]["error.type"] == "llm_error"


async def test_a_fork_links_to_its_parent_and_exports_only_its_own_calls(
    api: Any, hub: TaskHub, receiver: OTLPReceiver
) -> None:
    parent = await _run(api, "demo", "What is 17 * 23?")
    parent_spans = await receiver.trace(parent["task_id"])
    parent_root = _root(parent_spans)
    _, page = await api("GET", "tasks", parent["task_id"])
    call = next(
        e
        for e in page["events"]
        if e["type"] == "step" and e["data"]["event_type"] == "observation"
    )
    status, fork = await api(
        "POST",
        "tasks",
        parent["task_id"],
        "fork",
        body={"at_seq": call["seq"], "edit": {"observation": "400"}},
    )
    assert status == 201, fork
    await _finished(api, fork["task_id"])
    spans = await receiver.trace(fork["task_id"])
    root = _root(spans)
    assert root["trace_id"] != parent_root["trace_id"]
    assert root["links"] == [
        {
            "trace_id": parent_root["trace_id"],
            "span_id": parent_root["span_id"],
            "attributes": {"agentkit.link.type": "fork"},
        }
    ]
    assert root["attributes"]["agentkit.task.parent_id"] == parent["task_id"]
    assert root["attributes"]["agentkit.task.copied_steps"] > 0
    # The parent's calculator call was copied, not made again: no span of it here.
    assert not [s for s in spans if s["name"].startswith("execute_tool")]
    assert [s["name"] for s in spans if s is not root] == ["chat scripted"]


async def _publish_kernel_run(api: Any, ws_url: Any, headers: dict[str, str]) -> tuple[str, str]:
    """A run published as a kernel publishes it: returns (task id, publish token)."""
    _, created = await api("POST", "kernel-tasks", body={"agent": "nb-agent", "input": "sum"})
    task_id, token = created["task_id"], created["publish_token"]
    url = ws_url(task_id).replace("/ws/tasks/", "/ws/publish/")
    events = [
        {
            "event_type": "usage",
            "step": 1,
            "data": {
                "model": "gpt-test",
                "prompt_tokens": 7,
                "completion_tokens": 3,
                "cost": None,
                "duration_ms": 20.0,
            },
        },
        {
            "event_type": "tool_call",
            "step": 1,
            "data": {"call_id": "c1", "name": "add", "arguments": {"a": 1, "b": 2}},
        },
        {
            "event_type": "observation",
            "step": 1,
            "data": {
                "call_id": "c1",
                "name": "add",
                "output": "3",
                "is_error": False,
                "duration_ms": 1.0,
            },
        },
        {
            "event_type": "usage",
            "step": 2,
            "data": {
                "model": "gpt-test",
                "prompt_tokens": 9,
                "completion_tokens": 2,
                "cost": None,
                "duration_ms": 15.0,
            },
        },
        {"event_type": "final_answer", "step": 2, "data": {"output": "3"}},
    ]
    now = time.time()
    async with connect(
        url, additional_headers={**headers, "X-AgentKit-Publish-Token": token}
    ) as ws:
        for index, event in enumerate(events):
            event["timestamp"] = now + index * 0.05
            await ws.send(json.dumps({"type": "event", "event": event, "seq": index + 1}))
        await ws.wait_closed()
    return task_id, token


async def test_a_kernel_published_run_is_exported_by_the_server_and_no_secret_is_in_any_span(
    api: Any,
    hub: TaskHub,
    receiver: OTLPReceiver,
    ws_url: Any,
    jp_auth_header: dict[str, str],
    jp_serverapp: Any,
) -> None:
    server_token = jp_serverapp.identity_provider.token
    task_id, publish_token = await _publish_kernel_run(api, ws_url, jp_auth_header)
    await _finished(api, task_id)
    spans = await receiver.trace(task_id, count=4)
    root = _root(spans)
    assert root["attributes"]["agentkit.task.origin"] != "server"
    assert "gen_ai.provider.name" not in root["attributes"]  # a kernel's agent: not known
    assert sorted(s["name"] for s in spans) == [
        "chat gpt-test",
        "chat gpt-test",
        "execute_tool add",
        "invoke_agent nb-agent",
    ]
    assert root["attributes"]["gen_ai.usage.input_tokens"] == 16
    # Runs whose input and tool output hold the server's token and the API key.
    leaky = f"token {server_token} key {API_KEY} auth {OTLP_SECRET}"
    await _run(api, "demo", leaky)
    await _run(api, "otel-flaky", leaky)
    await asyncio.to_thread(jp_serverapp.web_app.settings["agentkit"].otel_exporter.flush)
    dump = b"".join(receiver.bodies)
    for secret in (server_token, API_KEY, publish_token, OTLP_SECRET, OTLP_SECRET.split()[1]):
        assert secret.encode() not in dump
        assert secret not in json.dumps(receiver.spans)


class TestContent:
    @pytest.fixture
    def agentkit_config(
        self, receiver: OTLPReceiver, otel_env: None, monkeypatch: pytest.MonkeyPatch
    ) -> dict[str, Any]:
        monkeypatch.setenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "true")
        return {"otel_endpoint": receiver.endpoint}

    async def test_content_is_in_the_spans_when_the_standard_variable_says_so(
        self, api: Any, hub: TaskHub, receiver: OTLPReceiver, jp_serverapp: Any
    ) -> None:
        task = await _run(api, "otel-flaky", "How many people live in Paris?")
        spans = await receiver.trace(task["task_id"], count=4)
        root = _root(spans)
        asked = json.loads(root["attributes"]["gen_ai.input.messages"])
        assert asked == [
            {
                "role": "user",
                "parts": [{"type": "text", "content": "How many people live in Paris?"}],
            }
        ]
        answered = json.loads(root["attributes"]["gen_ai.output.messages"])
        assert answered[0]["parts"][0]["content"] == "The table is down; I cannot say."
        (failed,) = [s for s in spans if s["name"] == "execute_tool flaky_lookup"]
        assert json.loads(failed["attributes"]["gen_ai.tool.call.arguments"]) == {"city": "Paris"}
        assert "the table of Paris is down" in failed["attributes"]["gen_ai.tool.call.result"]
        assert "the table of Paris is down" in failed["status"]["message"]
        first = min((s for s in spans if s["name"] == "chat scripted"), key=lambda s: s["start_ns"])
        said = json.loads(first["attributes"]["gen_ai.output.messages"])[0]
        assert said["parts"][0] == {"type": "text", "content": "Looking Paris up."}
        assert said["parts"][1]["type"] == "tool_call"
        assert said["parts"][1]["name"] == "flaky_lookup"
        # The server's token stays out even of captured content.
        token = jp_serverapp.identity_provider.token
        task = await _run(api, "demo", f"What is 2 + 2? {token}")
        spans = await receiver.trace(task["task_id"])
        assert token not in json.dumps(spans)
        assert (
            "[secret]"
            in json.loads(_root(spans)["attributes"]["gen_ai.input.messages"])[0]["parts"][0][
                "content"
            ]
        )


class TestCollectorDown:
    @pytest.fixture
    def agentkit_config(self, otel_env: None, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
        import socket

        with socket.socket() as probe:  # a port nobody listens on
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        monkeypatch.setenv(
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", f"http://127.0.0.1:{port}/v1/traces"
        )
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "1")
        return {}

    async def test_a_dead_collector_costs_a_warning_and_the_runs_finish(
        self, api: Any, hub: TaskHub, caplog: pytest.LogCaptureFixture
    ) -> None:
        caplog.set_level(logging.WARNING, logger="agentkit_jupyter.telemetry")
        tasks = [await _run(api, "demo", "What is 17 * 23?") for _ in range(3)]
        assert [t["status"] for t in tasks] == ["succeeded"] * 3
        async with asyncio.timeout(60):
            while not [r for r in caplog.records if r.name == "agentkit_jupyter.telemetry"]:
                await asyncio.sleep(0.1)
        (warning,) = [r for r in caplog.records if r.name == "agentkit_jupyter.telemetry"][:1]
        assert warning.levelno == logging.WARNING
        assert "runs are not affected" in warning.getMessage()
        # Back-fill says it was not delivered, and the server still answers.
        status, answer = await api("POST", "tasks", tasks[0]["task_id"], "otel")
        assert status == 200
        assert answer["delivered"] is False and answer["spans"] > 0


class TestExportOff:
    @pytest.fixture
    def agentkit_config(self, otel_env: None) -> dict[str, Any]:
        return {}

    async def test_back_fill_says_when_the_server_exports_nothing(
        self, api: Any, jp_serverapp: Any
    ) -> None:
        assert jp_serverapp.web_app.settings["agentkit"].otel_exporter is None
        task = await _run(api, "echo", "hi")
        status, answer = await api("POST", "tasks", task["task_id"], "otel")
        assert status == 409 and answer["error"]["code"] == "otel_off"
        status, answer = await api("POST", "otel", "export", body={})
        assert status == 409 and answer["error"]["code"] == "otel_off"


async def test_back_fill_over_rest_by_task_and_by_filter(
    api: Any, hub: TaskHub, receiver: OTLPReceiver, jp_serverapp: Any
) -> None:
    first = await _run(api, "echo", "one")
    second = await _run(api, "echo", "two")
    await receiver.trace(second["task_id"])
    await asyncio.to_thread(jp_serverapp.web_app.settings["agentkit"].otel_exporter.flush)
    receiver.clear()
    status, answer = await api("POST", "tasks", first["task_id"], "otel")
    assert status == 200, answer
    assert answer == {"task_ids": [first["task_id"]], "spans": 2, "delivered": True, "skipped": []}
    spans = await receiver.trace(first["task_id"], count=2)
    assert _root(spans)["span_id"]  # the same ids as the live export's: a re-export
    receiver.clear()
    status, answer = await api(
        "POST", "otel", "export", body={"agent": ["echo"], "status": ["succeeded"]}
    )
    assert status == 200, answer
    assert answer["task_ids"] == [first["task_id"], second["task_id"]]
    assert answer["delivered"] is True
    await receiver.trace(second["task_id"])
    status, answer = await api(
        "POST", "otel", "export", body={"task_ids": [first["task_id"], "nope"]}
    )
    assert answer["task_ids"] == [first["task_id"]] and answer["skipped"] == ["nope"]
    status, answer = await api("POST", "otel", "export", body={"status": ["bogus"]})
    assert status == 400
    status, answer = await api("POST", "tasks", "nope", "otel")
    assert status == 404


async def test_back_fill_from_the_history_with_the_cli(
    tmp_path: Path, receiver: OTLPReceiver, otel_env: None
) -> None:
    path = tmp_path / "tasks.sqlite3"
    store = TaskStore(path)
    hub = TaskHub(AgentPool(demo_agents()), store=store)
    answered = hub.create_task("demo", "What is 17 * 23?")
    other = hub.create_task("demo", "Compare Paris and Rome")
    await answered.wait()
    await other.wait()
    await hub.shutdown()
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    command = [sys.executable, "-m", "agentkit_jupyter", "export-otel", "--db", str(path)]
    done = await asyncio.to_thread(
        subprocess.run,
        [*command, "--endpoint", receiver.endpoint, "--task", answered.task_id],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "exported 1 run(s)" in done.stdout
    spans = await receiver.trace(answered.task_id)
    assert _root(spans)["name"] == "invoke_agent demo"
    assert {s["name"] for s in spans} >= {"chat scripted", "execute_tool calculator"}
    # By filter, with the endpoint from the standard variable.
    receiver.clear()
    env["OTEL_EXPORTER_OTLP_ENDPOINT"] = receiver.endpoint
    done = await asyncio.to_thread(
        subprocess.run,
        [*command, "--agent", "demo", "--status", "succeeded"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "exported 2 run(s)" in done.stdout
    await receiver.trace(other.task_id, count=7)


async def test_task_export_otel_in_a_kernel_through_the_server_and_from_the_kernel(
    kernel: Any,  # noqa: F811
    hub: TaskHub,
    receiver: OTLPReceiver,
    jp_serverapp: Any,
) -> None:
    _, _, execute = await kernel()
    # A notebook agent's run: the server exported it live when it ended (it went
    # through the hub); export_otel() asks the server to send it again.
    out = await execute(
        "import json\ntask = quick.run('EMEA?', display=False)\ntask.wait(30)\nprint(task.task_id)",
        timeout=60,
    )
    task_id = out.strip().splitlines()[-1]
    live = await receiver.trace(task_id, count=4)
    assert _root(live)["attributes"]["agentkit.task.origin"] != "server"
    await asyncio.to_thread(jp_serverapp.web_app.settings["agentkit"].otel_exporter.flush)
    receiver.clear()
    out = await execute("print(json.dumps({'id': task.task_id, 'answer': task.export_otel()}))")
    done = json.loads(out.strip().splitlines()[-1])
    assert done["answer"]["task_ids"] == [done["id"]]
    assert done["answer"]["delivered"] is True and done["answer"]["spans"] == 4
    spans = await receiver.trace(done["id"], count=4)
    assert _root(spans)["name"] == "invoke_agent sales-bot"
    assert {s["name"] for s in spans} == {
        "invoke_agent sales-bot",
        "chat scripted",
        "execute_tool region_sales",
    }
    # With an endpoint of its own, the kernel sends the spans itself (the gateway is
    # known there: the provider too), with content when asked.
    receiver.clear()
    out = await execute(
        f"answer = task.export_otel({receiver.endpoint!r}, capture_content=True)\n"
        "print(json.dumps(answer))",
        timeout=60,
    )
    answer = json.loads(out.strip().splitlines()[-1])
    assert answer["delivered"] is True and answer["spans"] == 4
    spans = await receiver.trace(done["id"], count=4)
    root = _root(spans)
    assert root["attributes"]["gen_ai.provider.name"] == "agentkit.scripted"
    assert "EMEA?" in root["attributes"]["gen_ai.input.messages"]
    (call,) = [s for s in spans if s["name"] == "execute_tool region_sales"]
    assert call["attributes"]["gen_ai.tool.call.result"] == "120"
    token = jp_serverapp.identity_provider.token
    assert token not in json.dumps(receiver.spans)
    assert all(token.encode() not in body for body in receiver.bodies)
