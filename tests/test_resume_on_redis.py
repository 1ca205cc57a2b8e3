"""A resume point older than the memory window is announced, again with the tasks
on a real Redis (tests/test_hardening_resume.py)."""

from __future__ import annotations

from on_redis import jp_server_config  # noqa: F401 - the tasks on Redis
from test_hardening_resume import *  # noqa: F403 - collected again, on Redis
from test_hardening_resume import agentkit_config  # noqa: F401 - its small window
