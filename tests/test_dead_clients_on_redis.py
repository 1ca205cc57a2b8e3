"""Dead clients again with the tasks on a real Redis: a client that never answers
is cut and forgotten, and one that stalls resumes with ``after`` losing nothing
(tests/test_hardening_dead_clients.py)."""

from __future__ import annotations

from on_redis import jp_server_config  # noqa: F401 - the tasks on Redis
from test_hardening_dead_clients import *  # noqa: F403 - collected again, on Redis
from test_hardening_dead_clients import agentkit_config  # noqa: F401 - its heartbeat
