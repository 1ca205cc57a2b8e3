"""The installed package shows up in Jupyter's own extension lists, enabled and OK.

Runs the ``jupyter`` command of the Python running the tests (the venv's), as a
user checking an install would (README, "Troubleshooting").
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import agentkit_jupyter

JUPYTER = Path(sys.executable).with_name("jupyter")
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def jupyter(*args: str) -> str:
    if not JUPYTER.exists():
        pytest.skip(f"no jupyter command next to {sys.executable}")
    env = {k: v for k, v in os.environ.items() if not k.startswith("JUPYTER_")}
    done = subprocess.run(
        [str(JUPYTER), *args], capture_output=True, text=True, timeout=120, env=env
    )
    output = ANSI.sub("", done.stdout + done.stderr)
    assert done.returncode == 0, output
    return output


def test_labextension_list_shows_it_enabled_and_ok() -> None:
    output = jupyter("labextension", "list")
    version = re.escape(agentkit_jupyter.__version__)
    line = next((li for li in output.splitlines() if "agentkit-jupyter" in li), None)
    assert line is not None, output
    assert re.fullmatch(rf"\s*agentkit-jupyter v{version} enabled\s+OK\b.*", line), line
    # Installed with the Python package (shared-data), in this environment's prefix.
    prefix = Path(sys.prefix) / "share" / "jupyter" / "labextensions"
    section = output.split(str(prefix), 1)
    assert len(section) == 2 and "agentkit-jupyter" in section[1].split("\n\n")[0], output
    assert (prefix / "agentkit-jupyter" / "package.json").is_file()
    assert "is not" not in line and "disabled" not in line


def test_server_extension_list_shows_it_enabled_and_ok() -> None:
    output = jupyter("server", "extension", "list")
    version = re.escape(agentkit_jupyter.__version__)
    assert re.search(r"^\s*agentkit_jupyter enabled\s*$", output, re.M), output
    assert re.search(rf"^\s*agentkit_jupyter {version} OK\s*$", output, re.M), output
    # Enabled by the config file the package installs, not by hand.
    config = Path(sys.prefix) / "etc" / "jupyter" / "jupyter_server_config.d"
    assert (config / "agentkit_jupyter.json").is_file()
