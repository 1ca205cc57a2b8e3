"""The API key on a socket and the heartbeat again with the tasks on a real Redis:
a silent client is closed, the run goes on (tests/test_server_auth_heartbeat.py)."""

from __future__ import annotations

from on_redis import jp_server_config  # noqa: F401 - the tasks on Redis
from test_server_auth_heartbeat import *  # noqa: F403 - collected again, on Redis
from test_server_auth_heartbeat import agentkit_config  # noqa: F401 - its heartbeat
