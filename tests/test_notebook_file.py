"""The whole run inside the .ipynb (issue 18, parts 2 and 3), end to end with real
processes: nbclient runs a notebook (a server agent's run and a kernel agent's run)
against a real server, the notebook is saved and the server stopped; ``jupyter
nbconvert --to html`` with no server shows every step in a ``<details>``; the saved
file holds no token, key or publish secret (grepped, also after a tool tried to leak
them); ``agentkit_jupyter.load()`` on a fresh server with an empty history imports
both runs under their own ids, with the events the first server had.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import nbformat
import pytest
from nbclient import NotebookClient
from server_process import ServerProcess

import agentkit_jupyter as ak
from agentkit_jupyter.kernel.client import ServerInfo
from agentkit_jupyter.protocol import RUN_LOG_MIMETYPE, TASK_MIMETYPE
from agentkit_jupyter.tasks.notebook_runs import unpack_run_log

pytestmark = pytest.mark.timeout(300)

API_KEY = "ak-notebook-file-test-key-5f0c9e0a1b2c3d4e"

SETUP = """\
import os
import pathlib
import agentkit_jupyter as ak
from agentkit_jupyter.core import ScriptedGateway, ScriptedTurn


@ak.tool
def environment(name: str) -> str:
    '''What the kernel's environment says (a careless tool: it would leak secrets).'''
    return os.environ.get(name, "")


snoop = ak.Agent("snoop", ScriptedGateway([
    ScriptedTurn("I read the token and the key.", [
        ("environment", {"name": "AGENTKIT_SERVER_TOKEN"}),
        ("environment", {"name": "AGENTKIT_API_KEY"}),
    ]),
    lambda ctx: ScriptedTurn(f"Found: {ctx.observations[-2]} and {ctx.observations[-1]}."),
]), tools=[environment])
"""

SERVER_RUN = 'demo = ak.run("demo", "Compare Paris and Rome")\n_ = demo.wait(60)'
KERNEL_RUN = 'local = snoop.run("What are the secrets?")\n_ = local.wait(60)'
# Kept out of the notebook's outputs: the publish secret the kernel got, for the grep.
SIDE_FILE = "publish_token.txt"
SIDE = 'pathlib.Path({path!r}).write_text(local.widget.local_run._publish_target["publish_token"]);'


def _execute(server: ServerProcess, folder: Path) -> nbformat.NotebookNode:
    side = folder / SIDE_FILE
    cells = [
        nbformat.v4.new_code_cell(SETUP),
        nbformat.v4.new_code_cell(SERVER_RUN),
        nbformat.v4.new_code_cell(KERNEL_RUN),
        nbformat.v4.new_code_cell(SIDE.format(path=str(side))),
    ]
    nb = nbformat.v4.new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "AGENTKIT_"))},
        "AGENTKIT_SERVER_URL": server.url,
        "AGENTKIT_SERVER_TOKEN": server.token,
        "AGENTKIT_API_KEY": API_KEY,
    }
    NotebookClient(
        nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(folder)}}
    ).execute(env=env)
    return nb


def _runs(nb: nbformat.NotebookNode) -> list[dict[str, Any]]:
    return [
        out["data"]
        for cell in nb.cells
        for out in cell.get("outputs", [])
        if RUN_LOG_MIMETYPE in out.get("data", {})
    ]


def _events(server: ServerProcess, task_id: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    events: list[dict[str, Any]] = []
    after = 0
    while True:
        response = httpx.get(
            server.api(f"tasks/{task_id}"), params={"after": after}, headers=server.headers
        )
        response.raise_for_status()
        page = response.json()
        events += page.pop("events")
        if not page["has_more"]:
            return page, events
        after = page["next_after"]


PREFER_HTML = (
    "--NbConvertBase.display_data_priority=text/html",
    "--NbConvertBase.display_data_priority=text/plain",
)


def _nbconvert(notebook: Path, out_dir: Path, *options: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTKIT_")}
    subprocess.run(
        [sys.executable, "-m", "jupyter", "nbconvert", "--to", "html", str(notebook)]
        + ["--output-dir", str(out_dir), *options],
        check=True,
        env=env,
        capture_output=True,
    )
    return (out_dir / notebook.with_suffix(".html").name).read_text()


def _check_converted(html: str) -> None:
    summaries = re.findall(r"<details><summary><b>Step (\d+)</b>([^\n]*?)</summary>", html)
    assert len(summaries) >= 3, summaries  # demo: steps 1 and 2; snoop: step 1
    assert any("lookup_city" in s for _, s in summaries)
    assert any("environment" in s for _, s in summaries)
    assert html.count("<b>succeeded</b>") >= 2
    assert "<b>Answer:</b>" in html


def test_a_saved_notebook_carries_its_runs_and_loads_into_a_fresh_server(tmp_path: Path) -> None:
    first = ServerProcess(tmp_path / "first", f"--AgentKitExtension.api_key={API_KEY}").start()
    try:
        nb = _execute(first, tmp_path)
        views = _runs(nb)
        assert [v[TASK_MIMETYPE]["agent"] for v in views] == ["demo", "snoop"]
        originals = {
            v[TASK_MIMETYPE]["task_id"]: _events(first, v[TASK_MIMETYPE]["task_id"]) for v in views
        }
    finally:
        first.stop()
    nb.cells.pop()  # the test's side cell (its source names the field), not the user's
    # Saved as JupyterLab saves by default (no widget state), and with the widget state
    # (JupyterLab's "Save Widget State Automatically", nbclient's default).
    with_state = tmp_path / "with_state.ipynb"
    nbformat.write(nb, with_state)
    assert "widgets" in nb.metadata
    del nb.metadata["widgets"]
    saved = tmp_path / "analysis.ipynb"
    nbformat.write(nb, saved)

    # Part 3: no secret in the files, not even the ones a tool returned.
    publish_token = (tmp_path / SIDE_FILE).read_text()
    assert len(publish_token) > 20
    for path in (saved, with_state):
        text = path.read_text()
        for secret in (first.token, API_KEY, publish_token):
            assert secret not in text, path
            assert json.dumps(secret)[1:-1] not in text, path
        assert "publish_token" not in text and "ws_url" not in text
    for view in views:  # what was saved decodes to no secret either
        run = view[RUN_LOG_MIMETYPE]
        assert run["cut"] is None
        inflated = json.dumps(unpack_run_log(run).messages)
        assert first.token not in inflated and API_KEY not in inflated
    snoop_log = unpack_run_log(views[1][RUN_LOG_MIMETYPE]).messages
    said = [m["data"]["data"].get("output") for m in snoop_log if m["type"] == "step"]
    assert any(isinstance(s, str) and "[secret]" in s for s in said), said

    # nbconvert, no server anywhere: every step unfolds, no script needed. With the
    # widget state saved, nbconvert prefers the widget view (drawn by JavaScript from a
    # CDN) unless told to prefer the HTML (docs/notebook-runs.md says how).
    _check_converted(_nbconvert(saved, tmp_path / "html"))
    _check_converted(_nbconvert(with_state, tmp_path / "html", *PREFER_HTML))
    assert "<details><summary><b>Step" not in _nbconvert(with_state, tmp_path / "default")

    # load() on a fresh server with an empty history: both runs, same ids, same events.
    fresh = ServerProcess(tmp_path / "fresh").start()
    try:
        listing = httpx.get(fresh.api("tasks"), headers=fresh.headers).json()
        assert listing["tasks"] == []
        ids = ak.load(saved, server=ServerInfo(fresh.url, fresh.token))
        assert ids == {task_id: task_id for task_id in originals}
        listing = httpx.get(fresh.api("tasks"), headers=fresh.headers).json()
        assert sorted(t["task_id"] for t in listing["tasks"]) == sorted(originals)
        for task_id, (record, events) in originals.items():
            again, imported = _events(fresh, task_id)
            assert imported == events, task_id
            assert again["status"] == record["status"] == "succeeded"
            assert again["origin"] == record["origin"]
            assert again["imported_from"]["source"] == "analysis.ipynb"
        # Loaded again: the ids are taken now, so the copies get new ones.
        again_ids = ak.load(saved, server=ServerInfo(fresh.url, fresh.token))
        assert set(again_ids) == set(originals)
        assert not set(again_ids.values()) & set(originals)
    finally:
        fresh.stop()
    # In the history: a restart keeps the imported tasks, their mark and their events.
    restarted = ServerProcess(tmp_path / "fresh").start()
    try:
        for task_id, (_, events) in originals.items():
            again, imported = _events(restarted, task_id)
            assert imported == events, task_id
            assert again["imported_from"]["task_id"] == task_id
    finally:
        restarted.stop()


def test_load_refuses_what_is_not_a_notebook_and_imports_nothing(tmp_path: Path) -> None:
    bad = tmp_path / "notes.ipynb"
    bad.write_text("this is not JSON")
    with pytest.raises(ValueError, match="is not a notebook nbformat can read"):
        ak.load(bad, server=ServerInfo("http://127.0.0.1:9/", "x"))
    empty = tmp_path / "empty.ipynb"
    nbformat.write(nbformat.v4.new_notebook(), empty)
    with pytest.warns(UserWarning, match="has no saved agentkit runs"):
        assert ak.load(empty, server=ServerInfo("http://127.0.0.1:9/", "x")) == {}
