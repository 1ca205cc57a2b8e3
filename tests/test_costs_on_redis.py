"""Tokens, cost and budgets with the tasks on a real Redis (the embedded worker
running them): the record a viewer reads has the same tokens and cost, and a budget
ends a run in the same place, as on the default in-process hub."""

from __future__ import annotations

from on_redis import jp_server_config  # noqa: F401 - the tasks on Redis
from test_costs import (  # noqa: F401 - collected again, on Redis
    _no_user_prices,
    llm,
    test_a_budget_stops_a_streaming_call_where_it_crosses,
    test_an_agents_cost_budget_ends_the_run_after_the_call_that_crossed_it,
    test_the_record_has_tokens_in_and_out_and_the_cost,
)
