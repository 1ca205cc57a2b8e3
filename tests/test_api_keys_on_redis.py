"""API keys and their scopes again with the tasks on a real Redis: every REST route
and the task WebSocket per scope, nothing else of Jupyter opened, keys never logged
(tests/test_api_keys.py)."""

from __future__ import annotations

from on_redis import jp_server_config  # noqa: F401 - the tasks on Redis
from test_api_keys import *  # noqa: F403 - collected again, on Redis
from test_api_keys import agentkit_config, http  # noqa: F401 - its keys
