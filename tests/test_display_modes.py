"""Every display mode renders again from a saved notebook after a server restart
(issue 21, item 2).

One notebook (tests/display_modes.py) shows a run each way there is: ``run()`` with
each ``display=``, a handle shown later at the end of a cell or with ``show()``, and
``Agent.run()`` in the kernel. nbclient executes it against a real server, the kernel
goes away, the notebook is saved and the server restarts on the same data dir. Each
saved output must carry what JupyterLab re-attaches by task id (the task mimetype), a
static copy of the finished run for GitHub and nbviewer, and the restarted server must
still have the task it names. An output whose only live rendering is the ipywidgets
view would show "Error displaying widget: model not found" instead.
(tests/browser/test_display_modes.py opens the saved notebook in JupyterLab.)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import nbformat
import pytest
from display_modes import MODES, TASK_MIMETYPE, WIDGET_VIEW, execute, outputs_by_mode
from server_process import ServerProcess

from agentkit_jupyter.protocol import RUN_LOG_MIMETYPE
from agentkit_jupyter.tasks.notebook_runs import unpack_run_log

pytestmark = pytest.mark.timeout(240)


def test_every_display_mode_renders_again_after_a_restart(tmp_path: Path) -> None:
    home = tmp_path / "server"
    first = ServerProcess(home).start()
    try:
        nb = execute(first.url, first.token, str(tmp_path))
    finally:
        first.stop()
    saved = tmp_path / "modes.ipynb"
    nbformat.write(nb, saved)

    restarted = ServerProcess(home).start()  # the same data dir, so the same history
    try:
        by_mode = outputs_by_mode(nbformat.read(saved, as_version=4))
        assert set(by_mode) == set(MODES)
        for mode, (_, agent, tool_name) in MODES.items():
            outs = by_mode[mode]
            assert not [o for o in outs if o["output_type"] == "error"], (mode, outs)
            shown = [o["data"] for o in outs if "data" in o and WIDGET_VIEW in o["data"]]
            assert len(shown) == 1, (mode, outs)
            data = shown[0]
            # What JupyterLab re-attaches by task id, with no kernel and no widget model.
            reference = data.get(TASK_MIMETYPE)
            assert reference and reference["agent"] == agent, (mode, sorted(data))
            # The static copy (GitHub, nbviewer), brought up to date when the run ended.
            html = data["text/html"]
            assert "<b>succeeded</b>" in html and tool_name in html, (mode, html[:300])
            assert "Running:" not in html, mode
            assert "<details><summary><b>Step 1</b>" in html, mode  # unfolds, no script
            # The run itself, whole, for load() (issue 18): record and log.
            run_log = data.get(RUN_LOG_MIMETYPE)
            assert run_log and run_log["cut"] is None, (mode, sorted(data))
            assert run_log["task"]["task_id"] == reference["task_id"], mode
            assert data["text/plain"].startswith("TaskHandle(task_id="), mode
            # The restarted server still has the task and its steps.
            task = _task(restarted, reference["task_id"])
            assert task["status"] == "succeeded", (mode, task["status"])
            steps = [e for e in task["events"] if e["type"] == "step"]
            names = [
                s["data"]["data"]["name"] for s in steps if s["data"]["event_type"] == "tool_call"
            ]
            assert tool_name in names, (mode, names)
            assert unpack_run_log(run_log).messages == task["events"], mode
    finally:
        restarted.stop()


def _task(server: ServerProcess, task_id: str) -> dict[str, Any]:
    response = httpx.get(server.api(f"tasks/{task_id}"), headers=server.headers, timeout=10)
    response.raise_for_status()
    return dict(response.json())
