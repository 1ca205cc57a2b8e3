"""Core server and human-in-the-loop tests again with the tasks on a real Redis
(``backend_url``, the embedded worker running them): the same REST answers,
WebSocket streams, approvals, pauses and cancels as the default in-process hub.
Each imported test runs here on Redis (``on_redis.jp_server_config``);
tests/test_scale_out.py covers several servers and workers."""

from __future__ import annotations

from on_redis import jp_server_config  # noqa: F401 - the tasks on Redis
from test_approvals import (  # noqa: F401 - collected again, on Redis
    _fresh_runs,  # its autouse fixture: the tools' record of runs, empty per test
    test_approve_on_the_socket_runs_the_call_once,
    test_cancel_while_waiting_decides_every_pending_call_cancelled,
    test_cancel_works_while_paused,
    test_edited_arguments_are_validated_then_run,
    test_pause_step_twice_and_resume,
    test_reconnect_while_waiting_replays_a_decidable_request,
    test_reject_over_rest_reaches_the_model_with_its_reason,
    test_rest_errors_have_their_codes,
    test_scope_task_approves_later_calls_of_the_same_tool,
    test_two_viewers_racing_one_wins_and_the_tool_runs_once,
)
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
