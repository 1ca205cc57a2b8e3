"""Faults again with the tasks on a real Redis (``backend_url``, the embedded
worker running them): clients vanishing or storming mid-run, cancels racing each
other, a tool that hangs, an LLM endpoint that times out or breaks off, as on the
default in-process hub (tests/test_hardening_faults.py). The racing cancels go
through the server's hub to a mirror of the task, so over the control stream to the
embedded worker.

Not here: test_shutdown_cancels_runs_and_tells_subscribers (a server process of its
own, and on Redis a stopped server's runs are not cancelled by design: their leases
lapse and another worker takes them over, docs/scale-out.md), and
test_a_cancel_arriving_while_the_answer_is_published_gives_one_result (its run is the
hub's own ``run_source``, a local task that never reaches the backend)."""

from __future__ import annotations

from on_redis import jp_server_config  # noqa: F401 - the tasks on Redis
from test_hardening_faults import (  # noqa: F401 - collected again, on Redis
    agentkit_config,  # its LLM endpoint
    llm,
    test_a_client_vanishing_mid_stream_leaves_the_run_and_others_alone,
    test_a_storm_of_200_clients_connecting_and_leaving_during_a_run,
    test_an_llm_endpoint_closing_mid_stream_fails_the_task_clearly,
    test_an_llm_endpoint_that_times_out_fails_the_task_clearly,
    test_cancel_racing_the_final_answer_gives_exactly_one_result,
    test_cancel_stops_a_tool_that_hangs_forever,
    test_two_cancels_at_once_give_one_result,
)
