"""The task list, its filters and its cursor again with the tasks on a real Redis
(``backend_url``, the embedded worker running them): ``GET tasks`` lists the
backend's records, and it answers as the in-process hub's list does."""

from __future__ import annotations

from on_redis import jp_server_config  # noqa: F401 - the tasks on Redis
from redis_support import RedisServer
from test_task_list import (  # noqa: F401 - collected again, on Redis
    test_a_foreign_or_bad_cursor,
    test_since_answers_only_changes_and_deletions,
    test_the_list_is_small_whatever_the_inputs,
)
from test_task_list_filters import (  # noqa: F401 - collected again, on Redis
    test_a_filter_answers_in_full_and_the_cursor_goes_on,
    test_agent,
    test_invalid_values,
    test_limit_is_the_newest_oldest_first,
    test_since_a_date_or_a_time,
    test_status_repeated_or_comma_separated,
    test_the_status_message_lists_the_statuses,
    test_without_filters_the_list_is_as_before,
)


def test_the_server_is_on_redis(jp_serverapp: object, redis_server: RedisServer) -> None:
    """The imported tests are not silently on the in-process hub."""
    from hardening_support import extension

    ext = extension(jp_serverapp)
    assert ext.backend_url == redis_server.url and ext.shared is not None
