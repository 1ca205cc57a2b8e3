"""Tools that hold the GIL forever, run in a worker process (``isolate="process"``).

A module of its own: a worker process imports an isolated tool by name.
"""

from __future__ import annotations

import os
import re
import secrets
import tempfile
from pathlib import Path

from agentkit_jupyter.core import Agent, ScriptedGateway, ScriptedTurn, tool

# Where each spinning worker writes its pid (the test process reads it back); computed
# in the test process and passed to the tool (a worker imports this module afresh).
PID_DIR = Path(tempfile.gettempdir()) / f"agentkit-spin-{os.getpid()}-{secrets.token_hex(4)}"


def pid_file(tag: str) -> Path:
    PID_DIR.mkdir(parents=True, exist_ok=True)
    return PID_DIR / f"{tag}.pid"


def _spin_holding_the_gil() -> bool:
    # Catastrophic backtracking: one C call that never returns nor lets the GIL go.
    return re.match(r"(a+)+b", "a" * 64) is not None


@tool(isolate="process")
def spin(pid_path: str) -> str:
    """Compute forever, holding the GIL.

    Args:
        pid_path: where to write the worker's pid
    """
    Path(pid_path).write_text(str(os.getpid()))
    return str(_spin_holding_the_gil())


@tool(isolate="process", timeout=0.5)
def spin_briefly(pid_path: str) -> str:
    """Compute forever, but with a timeout.

    Args:
        pid_path: where to write the worker's pid
    """
    Path(pid_path).write_text(str(os.getpid()))
    return str(_spin_holding_the_gil())


@tool(isolate="process")
def square(x: int) -> int:
    """x squared, in a worker process.

    Args:
        x: a number
    """
    return x * x


@tool(isolate="process")
def which_process() -> int:
    """The worker's pid."""
    return os.getpid()


def spinner_agents() -> list[Agent]:
    return [
        Agent(
            "spinner",
            ScriptedGateway(
                [
                    ScriptedTurn("Spinning.", [("spin", {"pid_path": str(pid_file("server"))})]),
                    ScriptedTurn("never"),
                ]
            ),
            tools=[spin],
            description="A CPU-bound tool that never ends, isolated in a process",
        )
    ]
