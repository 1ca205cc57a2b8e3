"""``jp_server_config`` with the tasks on the session's real Redis, for the
``*_on_redis.py`` modules (``from on_redis import jp_server_config``): it takes the
server config tests/conftest.py makes from whatever ``agentkit_config`` a test gets
(an imported module's own, or a parametrized one) and sets ``backend_url``, a key
prefix per test (no task of another test in its lists) and a short lease."""

from __future__ import annotations

import secrets

import pytest
from redis_support import RedisServer
from traitlets.config import Config


@pytest.fixture
def jp_server_config(jp_server_config: Config, redis_server: RedisServer) -> Config:
    jp_server_config.AgentKitExtension.update(
        backend_url=redis_server.url,
        backend_prefix=f"agentkit-test-{secrets.token_hex(4)}:",
        lease_seconds=5.0,
    )
    return jp_server_config
