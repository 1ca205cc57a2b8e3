"""Browser tests: a real JupyterLab (subprocess) driven by headless Chromium.

Chromium is Debian's (/usr/bin/chromium), launched by Playwright's Python API
without any Playwright browser download. Tests skip with a clear reason when it
is missing.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from browser_requirements import require_browser

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# A base URL that is not "/": catches front-end code that hard-codes paths.
BASE_URL = "/jp-base/"
DOCS = Path(__file__).resolve().parents[2] / "docs"
# Set to 1 to rewrite docs/widget.png from the demo test (otherwise it goes to tmp).
UPDATE_SCREENSHOT = os.environ.get("AGENTKIT_UPDATE_SCREENSHOT") == "1"


def screenshot_path(name: str) -> Path:
    """Where a documentation screenshot goes: docs/ when asked, else a temp folder."""
    if UPDATE_SCREENSHOT:
        return DOCS / name
    folder = Path(tempfile.gettempdir()) / "agentkit-browser-screenshots"
    folder.mkdir(exist_ok=True)
    return folder / name


# pytest-jupyter's autouse fixtures close this thread's event loop and clean up an
# in-process ServerApp after every test. Here the server is a subprocess and the
# thread's loop belongs to Playwright's sync API: both are replaced by no-ops.
@pytest.fixture(autouse=True)
def jp_asyncio_loop() -> Iterator[None]:
    yield None


@pytest.fixture(autouse=True)
def jp_server_cleanup() -> Iterator[None]:
    yield None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class LabServer:
    """A running `jupyter lab` subprocess."""

    url: str  # http://127.0.0.1:PORT/jp-base/
    token: str
    root: Path
    process: subprocess.Popen[bytes]
    log_path: Path
    http: httpx.Client = field(init=False)

    def __post_init__(self) -> None:
        self.http = httpx.Client(
            base_url=self.url, headers={"Authorization": f"token {self.token}"}, timeout=10
        )

    def api(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return self.http.request(method, path, **kwargs)

    def task(self, task_id: str) -> dict[str, Any]:
        response = self.api("GET", f"agentkit/api/tasks/{task_id}")
        response.raise_for_status()
        return dict(response.json())

    def tasks(self) -> list[dict[str, Any]]:
        response = self.api("GET", "agentkit/api/tasks")
        response.raise_for_status()
        return list(response.json()["tasks"])

    def write_notebook(self, name: str, cells: list[str]) -> str:
        notebook = {
            "cells": [
                {
                    "cell_type": "code",
                    "execution_count": None,
                    "id": f"cell-{i}",
                    "metadata": {},
                    "outputs": [],
                    "source": source,
                }
                for i, source in enumerate(cells)
            ],
            "metadata": {
                "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}
            },
            "nbformat": 4,
            "nbformat_minor": 5,
        }
        (self.root / name).write_text(json.dumps(notebook))
        return name

    def read_notebook(self, name: str) -> dict[str, Any]:
        return dict(json.loads((self.root / name).read_text()))

    def notebook_url(self, name: str) -> str:
        return f"{self.url}lab/tree/{name}?reset&token={self.token}"

    def kernels(self) -> list[dict[str, Any]]:
        return list(self.api("GET", "api/kernels").json())

    def interrupt_kernels(self) -> None:
        for kernel in self.kernels():
            self.api("POST", f"api/kernels/{kernel['id']}/interrupt")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@pytest.fixture(scope="session")
def chromium_path() -> Path:
    require_browser(CHROMIUM, on_ci=bool(os.environ.get("CI")))
    return CHROMIUM


@pytest.fixture(scope="session")
def lab_server(
    chromium_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LabServer]:
    with running_lab(tmp_path_factory.mktemp("lab")) as server:
        yield server


@contextlib.contextmanager
def running_lab(home: Path, *extra_args: str) -> Iterator[LabServer]:
    """A real ``jupyter lab`` in ``home`` (its own settings, runtime dir and task
    history ``home/tasks.sqlite3``), ready once the agentkit API answers; stopped on
    exit. ``extra_args`` go to its command line."""
    root = home / "notebooks"
    root.mkdir()
    settings = home / "settings"
    # No news pop-up over the screenshots.
    notification = settings / "@jupyterlab" / "apputils-extension"
    notification.mkdir(parents=True)
    (notification / "notification.jupyterlab-settings").write_text(
        json.dumps({"fetchNews": "false", "checkForUpdates": False})
    )
    port = _free_port()
    token = secrets.token_hex(16)
    env = {
        **os.environ,
        "JUPYTERLAB_SETTINGS_DIR": str(settings),
        "JUPYTERLAB_WORKSPACES_DIR": str(home / "workspaces"),
        "JUPYTER_RUNTIME_DIR": str(home / "runtime"),
        "PYTHONUNBUFFERED": "1",
    }
    for name in ("AGENTKIT_SERVER_URL", "AGENTKIT_SERVER_TOKEN"):
        env.pop(name, None)
    log_path = home / "server.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "jupyterlab",
                "--allow-root",
                "--no-browser",
                "--ServerApp.ip=127.0.0.1",
                f"--port={port}",
                "--port-retries=0",
                f"--ServerApp.base_url={BASE_URL}",
                f"--IdentityProvider.token={token}",
                "--LabApp.news_url=",
                f"--ServerApp.root_dir={root}",
                # Task history of this server only (not the user's data dir).
                f"--AgentKitExtension.db_path={home / 'tasks.sqlite3'}",
                *extra_args,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=home,
        )
    server = LabServer(f"http://127.0.0.1:{port}{BASE_URL}", token, root, process, log_path)
    deadline = time.monotonic() + 60
    try:
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"jupyter lab exited early:\n{server.log()}")
            try:
                if server.api("GET", "agentkit/api/agents").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"jupyter lab did not start:\n{server.log()}")
            time.sleep(0.25)
        yield server
    finally:
        server.http.close()
        process.terminate()
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


@pytest.fixture(scope="session")
def browser(chromium_path: Path) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(chromium_path), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


# Records when task-view nodes appear, to prove steps arrive one by one.
TIMELINE_SCRIPT = """
window.__akTimeline = [];
new MutationObserver(records => {
  for (const record of records) {
    for (const node of record.addedNodes) {
      if (node.nodeType === 1 && node.matches(
          '.ak-step, .ak-call, .ak-observation, .ak-thought, .ak-callout')) {
        window.__akTimeline.push({t: performance.now(), cls: node.className});
      }
    }
  }
}).observe(document, {subtree: true, childList: true});
"""


@pytest.fixture
def page(browser: Any, lab_server: LabServer) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 960})
    context.add_init_script(TIMELINE_SCRIPT)
    page = context.new_page()
    page.set_default_timeout(30_000)
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    try:
        yield page
    finally:
        lab_server.interrupt_kernels()
        context.close()
        # Uncaught exceptions of our front end fail the test.
        ours = [e for e in errors if "agentkit" in e or "ak-" in e]
        assert not ours, ours


def open_notebook(page: Any, server: LabServer, name: str) -> None:
    """Open a notebook in JupyterLab and wait until its kernel is connected and idle."""
    page.goto(server.notebook_url(name))
    page.wait_for_selector(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook .jp-Cell")

    def kernel_ready() -> bool:
        sessions = server.api("GET", "api/sessions").json()
        kernels = [s["kernel"] for s in sessions if s.get("path", "").endswith(name)]
        return any(k["execution_state"] == "idle" and k["connections"] > 0 for k in kernels)

    wait_until(kernel_ready, timeout=60, interval=0.2)
    page.wait_for_selector(
        ".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook-ExecutionIndicator[data-status='idle']"
    )


# The plugin that renders the task mimetype (labextension/src/index.ts).
RENDERER_PLUGIN = "agentkit-jupyter:renderer"
# Adds a plugin to the page config's disabledExtensions before JupyterLab (a deferred
# script) reads it: the config's <script> element is edited once the parser has it all.
DISABLE_PLUGIN_SCRIPT = """
(plugin => {
  const observer = new MutationObserver(() => {
    const element = document.getElementById('jupyter-config-data');
    let config;
    try {
      config = JSON.parse(element.textContent);
    } catch (error) {
      return;  // not there, or not all parsed yet
    }
    observer.disconnect();
    config.disabledExtensions = [...(config.disabledExtensions || []), plugin];
    element.textContent = JSON.stringify(config);
  });
  observer.observe(document, {childList: true, subtree: true, characterData: true});
})(%s);
"""


def without_task_renderer(page: Any) -> None:
    """Show notebook outputs in this page as a front end without the agentkit plugin
    does (VS Code, Colab): JupyterLab loads here without the plugin's renderer of the
    task mimetype, so a task output shows its ipywidgets view (the anywidget). Every
    task output carries the task mimetype, which that renderer would otherwise take.
    Call before the page opens JupyterLab."""
    page.add_init_script(DISABLE_PLUGIN_SCRIPT % json.dumps(RENDERER_PLUGIN))


def run_cell(page: Any, index: int) -> None:
    """Run the index-th cell of the current notebook (Shift+Enter in its editor)."""
    cell = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Cell").nth(index)
    prompt = cell.locator(".jp-InputPrompt")
    for _attempt in range(3):
        cell.locator(".jp-InputArea-editor").click()
        page.keyboard.press("Shift+Enter")
        try:
            # "[*]:" while it runs, "[n]:" once done: the kernel got it.
            page.wait_for_function(
                "el => /\\[(\\*|\\d+)\\]/.test(el.textContent)",
                arg=prompt.element_handle(),
                timeout=5000,
            )
            return
        except Exception:
            continue
    raise AssertionError(f"cell {index} did not run")


def save_notebook(page: Any, server: LabServer, name: str) -> dict[str, Any]:
    """Save with Ctrl+S and return the notebook as written to disk."""
    before = (server.root / name).stat().st_mtime_ns
    page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook").click(
        position={"x": 5, "y": 5}
    )
    page.keyboard.press("Control+s")
    deadline = time.monotonic() + 10
    while (server.root / name).stat().st_mtime_ns == before:
        if time.monotonic() > deadline:
            raise AssertionError("the notebook was not saved")
        time.sleep(0.1)
    time.sleep(0.2)
    return server.read_notebook(name)


def wait_until(predicate: Callable[[], Any], timeout: float = 10, interval: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(interval)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    if report.when == "call" and report.failed and "page" in getattr(item, "funcargs", {}):
        # A screenshot of the page at the failure, named in the report.
        path = Path(tempfile.gettempdir()) / "agentkit-browser-failures" / f"{item.name}.png"
        path.parent.mkdir(exist_ok=True)
        try:
            item.funcargs["page"].screenshot(path=str(path))
        except Exception:
            return
        report.sections.append(("screenshot", str(path)))


VIEW = ".jp-NotebookPanel:not(.lm-mod-hidden) .jp-OutputArea .ak-task"


def task_view(page: Any, index: int = 0) -> Any:
    """The index-th task view in the outputs of the current notebook."""
    return page.locator(VIEW).nth(index)


def wait_status(view: Any, status: str, timeout: float = 30) -> None:
    """Wait until a task view shows ``status`` (its ``data-status``)."""
    view.page.wait_for_function(
        "([el, status]) => el.dataset.status === status",
        arg=[view.element_handle(), status],
        timeout=timeout * 1000,
    )


# Times, in the page, the click on a view's Cancel button and the moment the view's
# status becomes "cancelled": the latency a user sees, without Playwright's own
# round trips (actionability checks, polling) in it.
CANCEL_TIMER_SCRIPT = """
([view, button]) => {
  const timer = {click: null, cancelled: null};
  window.__akCancelTimer = timer;
  button.addEventListener('click', () => { timer.click = performance.now(); },
                          {capture: true, once: true});
  const observer = new MutationObserver(() => {
    if (view.dataset.status === 'cancelled') {
      timer.cancelled = performance.now();
      observer.disconnect();
    }
  });
  observer.observe(view, {attributes: true, attributeFilter: ['data-status']});
}
"""


def click_cancel(view: Any, timeout: float = 15) -> float:
    """Click the view's Cancel button; return the seconds from the click until the
    view showed the run cancelled (waiting up to ``timeout`` for it)."""
    button = view.locator(".ak-cancel")
    assert button.is_enabled()
    view.page.evaluate(CANCEL_TIMER_SCRIPT, [view.element_handle(), button.element_handle()])
    button.click()
    wait_status(view, "cancelled", timeout=timeout)
    timer = view.page.evaluate("window.__akCancelTimer")
    assert timer["click"] is not None and timer["cancelled"] is not None, timer
    elapsed = float(timer["cancelled"] - timer["click"]) / 1000
    print(f"cancel shown {elapsed:.3f} s after the click")  # in the report with -rP
    return elapsed
