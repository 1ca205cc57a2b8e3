"""Hardening tests again with the tasks on a real Redis (``backend_url``, the
embedded worker running them): bad input, random client messages, reconnect storms
and slow consumers get the same answers as on the default in-process hub.
(test_hardening_attacks.py is not here: it expects a task to be running the moment
its creation returns, where on Redis it is queued until a worker takes it.)"""

from __future__ import annotations

from on_redis import jp_server_config  # noqa: F401 - the tasks on Redis
from test_hardening_input import *  # noqa: F403 - collected again, on Redis
from test_hardening_property import *  # noqa: F403
from test_hardening_reconnect_storm import *  # noqa: F403
from test_hardening_slow_consumers import *  # noqa: F403
