"""The seed's single API key hardened, again with the tasks on a real Redis:
non-ASCII keys, guessed keys, constant-time comparison, undecodable query values
(tests/test_hardening_api_key.py)."""

from __future__ import annotations

from on_redis import jp_server_config  # noqa: F401 - the tasks on Redis
from test_hardening_api_key import *  # noqa: F403 - collected again, on Redis
from test_hardening_api_key import agentkit_config  # noqa: F401 - its key
