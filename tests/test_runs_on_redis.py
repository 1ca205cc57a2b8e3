"""Runs as data with the tasks on a real Redis (``backend_url``, the embedded worker
running them): forks and continuations are queued for a worker, which makes the
plan again from the parent's log on Redis; imported runs are written to Redis; the
compare route reads both runs' logs through the mirrors. The same tests as on the
default in-process hub, and one that only a shared backend can have."""

from __future__ import annotations

from on_redis import jp_server_config  # noqa: F401 - the tasks on Redis
from test_compare_route import (  # noqa: F401 - collected again, on Redis
    test_a_fork_with_an_edited_observation_against_its_parent,
    test_a_run_with_itself_is_the_same_everywhere,
    test_errors,
    test_two_runs_of_the_demo_agent_side_by_side,
)
from test_fork import (  # noqa: F401
    llm,
    test_a_follow_up_question_continues_the_conversation,
    test_a_fork_copies_its_steps_without_a_model_or_tool_call,
    test_a_new_input_forks_at_the_start,
    test_a_replaced_observation_reaches_the_model_and_the_tool_does_not_run,
    test_a_running_task_forks_at_a_step_it_has_completed,
    test_bad_forks_are_refused_with_their_codes,
    test_edited_arguments_run_the_call_again_with_them,
)
from test_notebook_runs import (  # noqa: F401
    test_a_cut_log_imports_its_part_and_says_so,
    test_an_id_that_is_taken_gets_a_new_one_and_parents_follow,
    test_an_imported_run_is_a_finished_task_with_the_same_events,
    test_an_imported_task_streams_like_a_finished_one,
    test_fork_and_compare_work_on_an_imported_task,
    test_malformed_imports_are_refused_and_nothing_is_imported,
)
