"""A 16 MiB answer with the tasks on a real Redis (tests/test_large_events.py): the
worker logs it cut and keeps its whole text on Redis, so the link in the cut message
serves the whole text through any server, as the task history does in-process."""

from __future__ import annotations

from on_redis import jp_server_config  # noqa: F401 - the tasks on Redis
from test_large_events import (  # noqa: F401 - collected again, on Redis
    agentkit_config,
    test_a_16_mib_answer_is_cut_in_the_log_the_record_and_the_list,
)
