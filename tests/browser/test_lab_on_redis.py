"""The task view and the side panel in a real JupyterLab whose tasks are on a real
Redis (``backend_url``, the embedded worker running them), in headless Chromium:
the same live steps, saved output, Cancel (also while the kernel is busy), reload
and panel as on the default in-process hub (tests/browser/test_lab.py)."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest
from redis_support import RedisServer

from .conftest import LabServer, running_lab
from .test_lab import (  # noqa: F401 - collected again, on Redis
    test_cancel_stops_a_slow_run,
    test_cancel_works_while_the_kernel_is_busy,
    test_demo_steps_arrive_live_and_the_output_is_saved,
    test_reload_reattaches_finished_tasks,
    test_side_panel_lists_tasks_opens_and_starts_them,
)

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def lab_server(
    chromium_path: object,
    redis_server: RedisServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[LabServer]:
    """This module's JupyterLab: the tasks on Redis, under a prefix of its own."""
    with running_lab(
        tmp_path_factory.mktemp("lab-on-redis"),
        f"--AgentKitExtension.backend_url={redis_server.url}",
        f"--AgentKitExtension.backend_prefix=agentkit-lab-{secrets.token_hex(4)}:",
    ) as server:
        assert "tasks on redis://" in server.log()  # really on Redis, not in-process
        yield server
