"""``agentkit_jupyter.load("analysis.ipynb")``: the runs a saved notebook carries,
imported into a server's history.

Each finished run's output holds its record and log (``protocol.RUN_LOG_MIMETYPE``,
packed by the widget); ``load`` reads the notebook with nbformat, gathers those (a run
shown twice counts once) and sends them to ``POST agentkit/api/tasks/import``. The
server checks every log before it imports any, and answers each run's new id.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from ..protocol import RUN_LOG_MIMETYPE
from .client import AgentKitClient, ServerInfo

__all__ = ["find_runs", "load"]


class NotANotebookError(ValueError):
    """The file is not a notebook nbformat can read."""


def find_runs(notebook: Any) -> list[dict[str, Any]]:
    """The run logs in a notebook's outputs (``protocol.RunLog``), in order, one per
    task id (the last one shown: it is the most complete). A run whose log could not
    be saved at all (not even its result fit the cap) is left out, with a warning."""
    found: dict[str, dict[str, Any]] = {}
    for cell in notebook.get("cells") or []:
        for output in cell.get("outputs") or []:
            data = output.get("data") if isinstance(output, dict) else None
            payload = data.get(RUN_LOG_MIMETYPE) if isinstance(data, dict) else None
            if not isinstance(payload, dict):
                continue
            task = payload.get("task")
            key = str(task.get("task_id")) if isinstance(task, dict) else f"#{len(found)}"
            found.pop(key, None)
            found[key] = _plain(payload)
    empty = [key for key, run in found.items() if run.get("messages") == 0]
    if empty:
        warnings.warn(
            f"{len(empty)} run(s) left out: their log did not fit in the notebook ("
            + ", ".join(empty)
            + ")",
            stacklevel=3,
        )
    return [run for key, run in found.items() if key not in empty]


def _plain(value: Any) -> Any:
    """nbformat's NotebookNode as plain dicts and lists, for JSON."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def load(path: str | Path, *, server: ServerInfo | None = None) -> dict[str, str]:
    """Import the runs saved in the notebook at ``path`` into the server's history
    (default: the server that started this kernel): each a finished task there, under
    its own id when that is free, a new one otherwise, marked ``imported_from``. Returns
    old id -> new id. A notebook without saved runs imports nothing (a warning says
    so); a file that is not a notebook raises ``NotANotebookError``, a malformed run
    ``AgentKitAPIError`` (``invalid_run_log``), and then nothing is imported."""
    import nbformat

    where = Path(path)
    try:
        notebook = nbformat.read(where, as_version=4)  # type: ignore[no-untyped-call]
    except OSError:
        raise
    except Exception as exc:
        raise NotANotebookError(f"{where} is not a notebook nbformat can read: {exc}") from None
    runs = find_runs(notebook)
    if not runs:
        warnings.warn(
            f"{where.name} has no saved agentkit runs (a run shows its log in the output once "
            "it has ended; a notebook saved before that, or by an older agentkit-jupyter, "
            "has none)",
            stacklevel=2,
        )
        return {}
    with AgentKitClient(server) as client:
        answer = client.import_runs(runs, source=where.name)
    return {str(old): str(new) for old, new in answer["ids"].items()}
