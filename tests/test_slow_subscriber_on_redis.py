"""A stuck subscriber neither slows nor breaks the others, again with the tasks on a
real Redis (tests/test_server_slow_subscriber.py)."""

from __future__ import annotations

from on_redis import jp_server_config  # noqa: F401 - the tasks on Redis
from test_server_slow_subscriber import *  # noqa: F403 - collected again, on Redis
from test_server_slow_subscriber import agentkit_config  # noqa: F401 - its lag cap
