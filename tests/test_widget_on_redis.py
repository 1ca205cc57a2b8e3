"""The notebook task handle and widget (tests/test_widget.py) against a server whose
tasks are on a real Redis (the embedded worker running them): run, attach, wait,
steps, cancel, the static copy and the relay behave as on the default hub."""

from __future__ import annotations

from on_redis import jp_server_config  # noqa: F401 - the tasks on Redis
from test_widget import *  # noqa: F403 - collected again, on Redis
