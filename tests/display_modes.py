"""A notebook with one cell per way of showing a run, for the display-mode tests
(issue 21, item 2): tests/test_display_modes.py checks the saved outputs after a
server restart, tests/browser/test_display_modes.py opens them in a fresh JupyterLab.
"""

from __future__ import annotations

import os
from typing import Any

import nbformat
from nbclient import NotebookClient

TASK_MIMETYPE = "application/vnd.agentkit.task+json"
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"

SETUP = """\
import agentkit_jupyter as ak
from agentkit_jupyter.core import ScriptedGateway, ScriptedTurn



@ak.tool
def lookup(city: str) -> int:
    '''Population of a city.'''
    return 2102650


analyst = ak.Agent("kernel-analyst", ScriptedGateway([
    ScriptedTurn("I look up Paris.", [("lookup", {"city": "Paris"})]),
    lambda ctx: ScriptedTurn(f"Paris has {ctx.observations[-1]} people."),
]), tools=[lookup])
"""

# mode -> (the cell, its agent, a tool the static copy must name)
MODES: dict[str, tuple[str, str, str]] = {
    "default": (
        'task = ak.run("demo", "Compare Paris and Berlin")\n_ = task.wait(60)',
        "demo",
        "lookup_city",
    ),
    "auto": (
        'task = ak.run("demo", "Compare Rome and Madrid", display="auto")\n_ = task.wait(60)',
        "demo",
        "lookup_city",
    ),
    "true": (
        'task = ak.run("demo", "Compare Vienna and Lisbon", display=True)\n_ = task.wait(60)',
        "demo",
        "lookup_city",
    ),
    "widget": (
        'task = ak.run("demo", "Compare Warsaw and Amsterdam", display="widget")\n'
        "_ = task.wait(60)",
        "demo",
        "lookup_city",
    ),
    "shown later": (
        'later = ak.run("demo", "What is 17 * 23?", display=False)\n_ = later.wait(60)\nlater',
        "demo",
        "calculator",
    ),
    "show()": (
        'shown = ak.run("demo", "What is 12 * 12?", display=False)\nshown.show()\n'
        "_ = shown.wait(60)",
        "demo",
        "calculator",
    ),
    "Agent.run": (
        'local = analyst.run("How many people live in Paris?")\n_ = local.wait(60)',
        "kernel-analyst",
        "lookup",
    ),
    "Agent.run widget": (
        'local = analyst.run("How many people live in Paris?", display="widget")\n'
        "_ = local.wait(60)",
        "kernel-analyst",
        "lookup",
    ),
}


def notebook() -> nbformat.NotebookNode:
    cells = [nbformat.v4.new_code_cell(SETUP)]
    for mode, (source, _, _) in MODES.items():
        cell = nbformat.v4.new_code_cell(source)
        cell.metadata["display_mode"] = mode
        cells.append(cell)
    nb = nbformat.v4.new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    return nb


def execute(url: str, token: str, folder: str) -> nbformat.NotebookNode:
    """Run the notebook in a fresh kernel pointed at the server ``url``, as the
    extension's kernels are; the kernel is shut down at the end. No widget state is
    saved in the notebook, as JupyterLab saves by default."""
    nb = notebook()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("OPENAI_")},
        "AGENTKIT_SERVER_URL": url,
        "AGENTKIT_SERVER_TOKEN": token,
    }
    NotebookClient(
        nb,
        timeout=120,
        kernel_name="python3",
        store_widget_state=False,
        resources={"metadata": {"path": folder}},
    ).execute(env=env)
    return nb


def outputs_by_mode(nb: nbformat.NotebookNode) -> dict[str, list[dict[str, Any]]]:
    """Each mode's cell outputs (after nbclient applied the final display updates)."""
    found: dict[str, list[dict[str, Any]]] = {}
    for cell in nb.cells:
        mode = cell.metadata.get("display_mode")
        if mode is not None:
            found[mode] = [dict(out) for out in cell.outputs]
    return found
