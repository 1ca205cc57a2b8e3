"""The README's first command: JupyterLab with the extension, the quickstart notebook
open, and the demo agents hosted."""

from __future__ import annotations

import os
import re
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from server_process import free_port

REPO = Path(__file__).parent.parent
pytestmark = pytest.mark.timeout(180)


def test_demo_script_opens_lab_on_the_quickstart_with_the_demo_agents(tmp_path: Path) -> None:
    port, token = free_port(), secrets.token_hex(8)
    opened = tmp_path / "opened.txt"
    # Stands in for the web browser: records what JupyterLab asks it to open.
    recorder = tmp_path / "browser.py"
    recorder.write_text(
        f"import sys, pathlib\npathlib.Path({str(opened)!r}).write_text(sys.argv[1])\n"
    )
    env = {
        **os.environ,
        "AGENTKIT_SKIP_SETUP": "1",  # the suite's own setup already ran
        "VENV": str(Path(sys.executable).parent.parent),
        "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"),
        "JUPYTER_DATA_DIR": str(tmp_path / "data"),
    }
    log = (tmp_path / "lab.log").open("wb")
    lab = subprocess.Popen(
        [
            "bash",
            str(REPO / "scripts" / "demo.sh"),
            f"--ServerApp.port={port}",
            "--ServerApp.port_retries=0",
            f"--IdentityProvider.token={token}",
            f"--ServerApp.browser={sys.executable} {recorder} %s",
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    headers = {"Authorization": f"token {token}"}
    base = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 90
        agents = None
        while time.monotonic() < deadline and lab.poll() is None:
            try:
                response = httpx.get(base + "agentkit/api/agents", headers=headers, timeout=2)
                if response.status_code == 200:
                    agents = response.json()["agents"]
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.3)
        log_text = (tmp_path / "lab.log").read_text(errors="replace")
        assert agents is not None, log_text
        assert {"demo", "demo-slow"} <= {a["name"] for a in agents}

        # It asked the browser to open JupyterLab on the quickstart notebook...
        deadline = time.monotonic() + 30
        while not opened.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        target = opened.read_text()
        if target.startswith("file://"):  # a redirect page that holds the real URL
            target = Path(target[len("file://") :]).read_text()
        match = re.search(rf"{re.escape(base)}lab/tree/([^?\"]*quickstart\.ipynb)", target)
        assert match, target

        # ...which the server has, and serves with the extension's front end in the page.
        notebook = httpx.get(base + "api/contents/" + match.group(1), headers=headers)
        assert notebook.status_code == 200
        assert notebook.json()["content"]["cells"][0]["source"].startswith("# Quickstart")
        page = httpx.get(base + "lab/tree/" + match.group(1), headers=headers)
        assert page.status_code == 200
        assert '"name": "agentkit-jupyter"' in page.text
    finally:
        os.killpg(lab.pid, signal.SIGTERM)
        try:
            lab.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(lab.pid, signal.SIGKILL)
            lab.wait()
        log.close()
