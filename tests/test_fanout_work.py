"""The hub's work per event does not grow with the number of subscribers.

Counted, not timed: what one append or one publish does synchronously, with 10 and
with 1,000 in-process subscribers waiting.
"""

from __future__ import annotations

import asyncio

import pytest

from agentkit_jupyter.core import AgentPool, EventType, StepEvent
from agentkit_jupyter.tasks import EventLog, HubLimits, TaskHub


@pytest.mark.parametrize("readers", [10, 1000])
async def test_an_append_wakes_no_reader_itself_and_one_turn_wakes_them_all(readers: int) -> None:
    log = EventLog()
    waiters = [log.waiter() for _ in range(readers)]
    for index in range(100):
        log.append(f'{{"n":{index}}}')
        # Nothing is resolved inside append: its cost does not depend on the readers.
        assert not any(w.done() for w in waiters)
    await asyncio.sleep(0)
    assert all(w.done() for w in waiters)  # all of them, once, after the burst


def _counting(log: EventLog) -> list[int]:
    calls = [0]
    original = log.lag_bytes

    def lag_bytes(after: int) -> int:
        calls[0] += 1
        return original(after)

    log.lag_bytes = lag_bytes  # type: ignore[method-assign]
    return calls


@pytest.mark.parametrize("subscribers", [10, 1000])
async def test_the_lag_check_looks_at_a_few_subscribers_not_all(subscribers: int) -> None:
    # Subscribers that read nothing are all behind, none beyond the caps.
    limits = HubLimits(max_subscribers_per_task=5000, subscriber_max_lag_messages=100_000)
    hub = TaskHub(AgentPool(), limits)
    task = hub.create_external_task("x", "q", origin="kernel")
    subs = [task.subscribe(0) for _ in range(subscribers)]
    calls = _counting(task.log)
    for index in range(640):
        task.publish(StepEvent(EventType.TOKEN, 1, {"delta": str(index)}))
    assert calls[0] <= 20  # ten checks, each looking at the slowest subscriber only
    assert all(s.dropped is None for s in subs)
    for sub in subs:
        sub.close()
    task.cancel("done")
