"""Every demo notebook, executed top to bottom against a real server with the extension.

The server is a real ``jupyter server`` process; nbclient starts a real kernel whose
environment points at it, as the extension does for the kernels it starts.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import nbformat
import pytest
from llm_server import FakeLLMServer, FakeToolCall, Reply
from nbclient import NotebookClient
from server_process import ServerProcess

NOTEBOOKS = Path(__file__).parent.parent / "notebooks"
TASK_MIMETYPE = "application/vnd.agentkit.task+json"
COMPARE_MIMETYPE = "application/vnd.agentkit.compare+json"
FINAL = {"succeeded", "failed", "cancelled"}
# Notebook runs are slow by nature (kernel start, a 1.5 s demo, a cancel after 3 s).
pytestmark = pytest.mark.timeout(240)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    process = ServerProcess(tmp_path_factory.mktemp("notebook-server")).start()
    yield process
    process.stop()


def execute(name: str, server: ServerProcess, tmp_path: Path, **env: str) -> nbformat.NotebookNode:
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    kernel_env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("OPENAI_")},
        "AGENTKIT_SERVER_URL": server.url,
        "AGENTKIT_SERVER_TOKEN": server.token,
        **env,
    }
    client = NotebookClient(
        notebook,
        timeout=120,
        kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path)}},
    )
    client.execute(env=kernel_env)
    return notebook


def outputs(notebook: nbformat.NotebookNode) -> list[dict[str, Any]]:
    return [out for cell in notebook.cells if cell.cell_type == "code" for out in cell.outputs]


def text_of(notebook: nbformat.NotebookNode) -> str:
    return "".join(
        out.get("text", "")
        if out["output_type"] == "stream"
        else str(out.get("data", {}).get("text/plain", ""))
        for out in outputs(notebook)
    )


def assert_clean(notebook: nbformat.NotebookNode) -> None:
    for out in outputs(notebook):
        assert out["output_type"] != "error", "\n".join(out.get("traceback", []))
        if out["output_type"] == "stream":
            assert out["name"] == "stdout", out["text"]


def task_views(notebook: nbformat.NotebookNode) -> list[dict[str, Any]]:
    """The displayed task views, after nbclient applied their final display updates."""
    return [out["data"] for out in outputs(notebook) if TASK_MIMETYPE in out.get("data", {})]


def server_task(server: ServerProcess, task_id: str) -> dict[str, Any]:
    response = httpx.get(server.api(f"tasks/{task_id}"), headers=server.headers, timeout=10)
    response.raise_for_status()
    return dict(response.json())


def test_quickstart(server: ServerProcess, tmp_path: Path) -> None:
    notebook = execute("quickstart.ipynb", server, tmp_path)
    assert_clean(notebook)
    text = text_of(notebook)
    assert re.search(r"^demo\s+\S", text, re.M) and re.search(r"^demo-slow\s+\S", text, re.M)
    views = task_views(notebook)
    assert [v[TASK_MIMETYPE]["agent"] for v in views] == ["demo", "demo-slow"]
    demo, slow = (server_task(server, v[TASK_MIMETYPE]["task_id"]) for v in views)
    assert demo["status"] == "succeeded" and "Rome" in demo["result"]["output"]
    assert slow["status"] == "cancelled"
    assert "succeeded\n" in text and "cancelled\n" in text
    # The static copy for GitHub and nbviewer was brought up to date at the end.
    assert "<b>succeeded</b>" in views[0]["text/html"]
    assert "<b>cancelled</b>" in views[1]["text/html"]


def test_dataframe_tools_run_in_the_kernel_and_are_shared(
    server: ServerProcess, tmp_path: Path
) -> None:
    notebook = execute("dataframe_tools.ipynb", server, tmp_path)
    assert_clean(notebook)
    text = text_of(notebook)
    assert "AMER brought the most revenue: 29,840." in text
    assert "shared with the server: True" in text
    views = task_views(notebook)
    assert [v[TASK_MIMETYPE]["agent"] for v in views] == ["sales-analyst", "scanner"]
    analyst, scanner = (server_task(server, v[TASK_MIMETYPE]["task_id"]) for v in views)
    assert analyst["origin"] == "kernel" and analyst["status"] == "succeeded"
    observations = [
        e["data"]["data"]["output"]
        for e in analyst["events"]
        if e["type"] == "step" and e["data"]["event_type"] == "observation"
    ]
    assert '"rows": 6' in observations[0] and '"AMER": 29840.0' in observations[1]
    assert scanner["status"] == "cancelled"
    assert "deep_scan" in text  # the cancelled step names the interrupted tool


def test_inspecting_a_run(server: ServerProcess, tmp_path: Path) -> None:
    notebook = execute("inspecting_a_run.ipynb", server, tmp_path)
    assert_clean(notebook)
    text = text_of(notebook)
    assert "'status': 'succeeded'" in text
    assert "total tokens:" in text and "step events" in text
    tables = [
        out["data"]["text/html"] for out in outputs(notebook) if "text/html" in out.get("data", {})
    ]
    assert any("tool_call" in t and "lookup_city" in t for t in tables)  # the steps table
    assert any("prompt_tokens" in t for t in tables)  # tokens per step
    images = [out for out in outputs(notebook) if "image/png" in out.get("data", {})]
    assert len(images) == 1  # the timeline
    tasks = httpx.get(server.api("tasks"), headers=server.headers, timeout=10).json()["tasks"]
    assert all(t["status"] in FINAL for t in tasks)
    # Runs as data: two forks (a changed observation, changed arguments), both answered
    # from the changed fact; a comparison; the history and steps tables; cost; budget.
    assert text.count("2.10 times the population") == 2
    forks = [t for t in tasks if t.get("parent_id")]
    assert len(forks) == 2 and {t["fork_kind"] for t in forks} == {"fork"}
    compared = [out for out in outputs(notebook) if COMPARE_MIMETYPE in out.get("data", {})]
    assert len(compared) == 1
    assert any("tokens_in" in t and "parent" in t for t in tables)  # history()
    assert any("copied" in t and "event_type" in t for t in tables)  # to_dataframe()
    assert "cost: $0.00" in text
    assert "'code': 'budget_exceeded'" in text


def test_real_endpoint_skips_cleanly_without_configuration(
    server: ServerProcess, tmp_path: Path
) -> None:
    notebook = execute("real_endpoint.ipynb", server, tmp_path)
    assert_clean(notebook)
    text = text_of(notebook)
    assert "No endpoint configured: set OPENAI_API_KEY" in text
    assert "OPENAI_BASE_URL" in text and "skipped" in text
    assert not task_views(notebook)


def test_real_endpoint_runs_against_an_openai_compatible_server(
    server: ServerProcess, tmp_path: Path
) -> None:
    with FakeLLMServer() as llm:
        llm.enqueue(
            Reply(
                text="I will look both up.",
                tool_calls=[
                    FakeToolCall("population", {"city": "Paris"}),
                    FakeToolCall("population", {"city": "Berlin"}),
                ],
            ),
            Reply(text="Berlin is bigger, by 1,775,450 people."),
        )
        notebook = execute(
            "real_endpoint.ipynb",
            server,
            tmp_path,
            OPENAI_BASE_URL=llm.url,
            OPENAI_API_KEY="sk-test",
            OPENAI_MODEL="tiny-model",
        )
        requests = list(llm.requests)
    assert_clean(notebook)
    text = text_of(notebook)
    assert "succeeded - Berlin is bigger, by 1,775,450 people." in text
    assert [r.body["model"] for r in requests] == ["tiny-model", "tiny-model"]
    tool_outputs = [m["content"] for m in requests[1].messages if m["role"] == "tool"]
    assert tool_outputs == ["2102650", "3878100"]  # the kernel's tool ran on the model's calls
    (view,) = task_views(notebook)
    assert server_task(server, view[TASK_MIMETYPE]["task_id"])["status"] == "succeeded"


def test_human_in_the_loop(server: ServerProcess, tmp_path: Path) -> None:
    notebook = execute("human_in_the_loop.ipynb", server, tmp_path)
    assert_clean(notebook)
    text = text_of(notebook)
    assert "waiting -> delete_rows" in text
    assert "send_email to team@example.com" in text
    views = task_views(notebook)
    assert [v[TASK_MIMETYPE]["agent"] for v in views] == ["demo-approval", "demo-slow"]
    task, slow = (server_task(server, v[TASK_MIMETYPE]["task_id"]) for v in views)
    assert slow["status"] == "cancelled"
    assert task["status"] == "succeeded"
    decided = [
        e["data"]["data"]
        for e in task["events"]
        if e["type"] == "step" and e["data"]["event_type"] == "approval_decided"
    ]
    assert [(d["decision"], d["reason"]) for d in decided] == [
        ("edited", None),
        ("rejected", "I will tell the team myself"),
    ]
    assert decided[0]["arguments"]["limit"] == 10
    observations = [
        e["data"]["data"]["output"]
        for e in task["events"]
        if e["type"] == "step" and e["data"]["event_type"] == "observation"
    ]
    assert "Deleted 10 'test' rows" in observations[1]
    assert "I will tell the team myself" in task["result"]["output"]
    # Paused at once, stepped twice, resumed, cancelled.
    assert "['paused', 'resumed', 'paused', 'resumed', 'paused']" in text
    assert text.rstrip().endswith("cancelled")


def test_mcp_tools(server: ServerProcess, tmp_path: Path) -> None:
    """A notebook agent with a real MCP server (examples/mcp_demo_server.py over stdio):
    the listing, calls, the server's progress, and its destructive tool approved."""
    notebook = execute("mcp_tools.ipynb", server, tmp_path)
    assert_clean(notebook)
    text = text_of(notebook)
    assert re.search(r"^delete_orders\s+asks first", text, re.M)
    assert re.search(r"^query\s+Run one read-only SQL query", text, re.M)
    assert "['shop (MCP)']" in text
    assert "waiting -> delete_orders {'status': 'test'}" in text
    assert "APAC has the most revenue (1,730). Deleted 2 order(s) with status 'test'." in text
    assert "revenue_report: 3 of 3 - EMEA: 1,680" in text
    (view,) = task_views(notebook)
    task = server_task(server, view[TASK_MIMETYPE]["task_id"])
    assert task["origin"] == "kernel" and task["status"] == "succeeded"
    decided = [
        e["data"]["data"]
        for e in task["events"]
        if e["type"] == "step" and e["data"]["event_type"] == "approval_decided"
    ]
    assert [d["decision"] for d in decided] == ["approved"]
    progress = [
        e["data"]["data"]["progress"]
        for e in task["events"]
        if e["type"] == "step" and e["data"]["event_type"] == "tool_progress"
    ]
    assert progress == [1, 2, 3]
