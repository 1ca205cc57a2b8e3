"""A broken agent source (entry point, import string, llm_base_url without the openai
extra) is skipped and reported in GET agents; the rest of the extension works. URLs with
credentials are shown redacted."""

from __future__ import annotations

import logging
import sys
from importlib.metadata import EntryPoint
from typing import Any

import pytest

from agentkit_jupyter.server import agents as agents_module

GROUP = "agentkit_jupyter.agents"
GATEWAY_URL = "http://alice:pa55word-xyz@127.0.0.1:9/v1?api-key=k3y-xyz&api-version=2024"


def explode() -> Any:
    raise RuntimeError("a factory that fails")


@pytest.fixture
def agentkit_config(monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> Any:
    points = [
        EntryPoint("missing", "no_such_package_xyz.agents:agents", GROUP),
        EntryPoint("explodes", f"{__name__}:explode", GROUP),
        EntryPoint("good", "support:firehose_agent", GROUP),
    ]
    monkeypatch.setattr(agents_module, "entry_points", lambda group: points)
    if "without_openai" in request.node.name:
        monkeypatch.setitem(sys.modules, "openai", None)  # `import openai` fails
    return {
        "agents": ["nope_xyz.module:thing", "support:bulky_agent"],
        "load_entry_points": True,
        "llm_base_url": GATEWAY_URL,
    }


def errors_by_source(body: Any) -> dict[str, str]:
    return {e["source"]: e["message"] for e in body["errors"]}


async def test_broken_sources_are_skipped_and_reported_without_openai(api: Any) -> None:
    status, body = await api("GET", "agents")
    assert status == 200  # the extension loaded
    names = {a["name"] for a in body["agents"]}
    assert {"demo", "firehose", "bulky"} <= names  # the good sources are hosted
    assert "assistant" not in names
    errors = errors_by_source(body)
    assert len(errors) == 4, errors
    missing = errors["entry point 'missing' (no_such_package_xyz.agents:agents)"]
    assert "ModuleNotFoundError" in missing and "no_such_package_xyz" in missing
    assert errors["entry point 'explodes' (test_agent_errors:explode)"].startswith("RuntimeError")
    assert "nope_xyz" in errors["nope_xyz.module:thing"]
    (llm,) = (m for s, m in errors.items() if s.startswith("llm_base_url"))
    assert "pip install 'agentkit-jupyter[openai]'" in llm
    text = repr(body)
    assert "pa55word-xyz" not in text and "k3y-xyz" not in text
    # The tasks of the good agents run.
    status, task = await api("POST", "tasks", body={"agent": "demo", "input": "2+2"})
    assert status == 201


async def test_a_gateway_url_is_shown_with_its_credentials_redacted(api: Any) -> None:
    pytest.importorskip("openai")
    _, body = await api("GET", "agents")
    (assistant,) = (a for a in body["agents"] if a["name"] == "assistant")
    description = assistant["description"]
    assert "pa55word-xyz" not in description and "k3y-xyz" not in description
    assert "[secret]@127.0.0.1:9/v1" in description and "api-version=2024" in description


def test_the_errors_are_logged(caplog: pytest.LogCaptureFixture) -> None:
    """The server log names each skipped source (checked on the app directly)."""
    from agentkit_jupyter.server.app import AgentKitExtension

    app = AgentKitExtension()
    app._known_secrets = []
    app.agents = ["nope_xyz.module:thing"]
    app.load_entry_points = False
    with caplog.at_level(logging.ERROR):
        app.log.addHandler(caplog.handler)
        try:
            pool = app._load_agents()
        finally:
            app.log.removeHandler(caplog.handler)
    assert "demo" in pool
    assert "skipped nope_xyz.module:thing" in caplog.text
