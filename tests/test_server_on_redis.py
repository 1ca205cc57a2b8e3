"""Core server tests again with the tasks on a real Redis (``backend_url``, the
embedded worker running them): the same REST answers and WebSocket streams as the
default in-process hub. Each imported test runs here with this module's
``agentkit_config``; tests/test_scale_out.py covers several servers and workers."""

from __future__ import annotations

import secrets
from typing import Any

import pytest
from redis_support import RedisServer
from test_server_rest import (  # noqa: F401 - collected again, on Redis
    test_bad_requests_get_json_errors,
    test_cancel_then_409_then_delete,
    test_create_run_and_read_a_task,
    test_list_agents,
)
from test_server_ws import (  # noqa: F401 - collected again, on Redis
    test_cancel_from_one_viewer_reaches_all,
    test_invalid_after_is_refused_and_beyond_log_is_said,
    test_late_join_and_reconnect_replay_exactly,
    test_ping_pong,
    test_the_seed_message_sequence,
    test_two_viewers_one_run_same_events,
    test_unknown_task_gets_error_then_4004,
)


@pytest.fixture
def agentkit_config(redis_server: RedisServer) -> dict[str, Any]:
    return {
        "backend_url": redis_server.url,
        # Each test its own keys: no task of another test in its lists.
        "backend_prefix": f"agentkit-test-{secrets.token_hex(4)}:",
        "lease_seconds": 5.0,
    }
