"""The stream's fast path: batched frames, one encoding per event, no silent gap.

And the benchmark source's input (``bench-firehose``). No timing assertions here:
the numbers live in benchmarks/ and docs/benchmarks.md.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from conftest import read_until_result

from agentkit_jupyter.core import AgentPool, CancellationToken, EventType, LLMError, StepEvent
from agentkit_jupyter.core.demo import parse_firehose_input
from agentkit_jupyter.protocol import ErrorCode
from agentkit_jupyter.tasks import EventLog, HubLimits, TaskHub


def test_firehose_input_is_a_count_with_optional_rate_and_delay() -> None:
    assert parse_firehose_input("250") == (250, None, 0.0)
    assert parse_firehose_input("") == (1000, None, 0.0)
    assert parse_firehose_input(" 10 rate=100 delay=1.5 ") == (10, 100.0, 1.5)
    for bad in ("ten", "10 rate=0", "10 rate=nan", "10 delay=-1", "10 speed=3", "10 rate", "-1"):
        with pytest.raises(LLMError):
            parse_firehose_input(bad)


def test_log_entries_are_encoded_once_and_unsendable_text_is_replaced() -> None:
    log = EventLog()
    entry = log.append('{"a":"héllo"}')
    assert entry.data == '{"a":"héllo"}'.encode() and entry.text == '{"a":"héllo"}'
    assert entry.size == len(entry.data)
    broken = log.append('{"a":"\ud800"}')  # a lone surrogate cannot be UTF-8
    assert json.loads(broken.data) == {"a": "?"}


async def test_every_waiting_reader_is_woken_and_a_cancelled_one_is_skipped() -> None:
    log = EventLog()
    first, gone, second = log.waiter(), log.waiter(), log.waiter()
    gone.cancel()
    log.append("{}")
    await asyncio.wait_for(asyncio.gather(first, second), 1)
    assert gone.cancelled()
    assert log.waiter() is not first  # each wait gets a fresh future


async def test_waiters_of_readers_that_went_away_do_not_pile_up() -> None:
    log = EventLog()
    for _ in range(1000):  # readers that connect and leave while nothing happens
        log.waiter().cancel()
    live = [log.waiter() for _ in range(500)]
    assert len(log._waiters) < 1000
    log.append("{}")
    await asyncio.wait_for(asyncio.gather(*live), 1)


def _burst(count: int) -> Callable[[CancellationToken], AsyncIterator[StepEvent]]:
    async def source(token: CancellationToken) -> AsyncIterator[StepEvent]:
        for index in range(count):  # never awaits
            yield StepEvent(EventType.TOKEN, 1, {"delta": f"{index} "})
        yield StepEvent(EventType.FINAL_ANSWER, 1, {"output": "done"})

    return source


async def test_a_source_that_never_awaits_still_lets_the_loop_run() -> None:
    hub = TaskHub(AgentPool())
    task = hub.run_source("burst", "q", _burst(50_000))
    seen: list[int] = []

    async def bystander() -> None:
        while not task.finished:
            seen.append(task.log.last_seq)
            await asyncio.sleep(0)

    await asyncio.wait_for(asyncio.gather(task.wait(), bystander()), 30)
    assert any(0 < seq < 50_000 for seq in seen)  # it ran in the middle of the burst


async def test_a_reader_whose_unsent_events_left_the_window_is_dropped_not_skipped() -> None:
    # Lag caps far above the window: only the window's edge can catch this reader, and
    # the periodic lag check has not looked since (it runs every 64 events).
    limits = HubLimits(max_events_in_memory=100, subscriber_max_lag_messages=10_000)
    hub = TaskHub(AgentPool(), limits)
    task = hub.create_external_task("x", "q", origin="kernel")
    slow = task.subscribe(0)
    for index in range(110):
        task.publish(StepEvent(EventType.TOKEN, 1, {"delta": str(index)}))
    assert slow.dropped is None and task.log.first_seq == 11
    received = [entry.seq async for batch in slow.batches() for entry in batch]
    assert received == [] and slow.dropped is ErrorCode.SUBSCRIBER_TOO_SLOW


async def test_subscribing_before_the_window_starts_at_its_oldest_event() -> None:
    hub = TaskHub(AgentPool(), HubLimits(max_events_in_memory=100))
    task = hub.run_source("burst", "q", _burst(1000))
    await task.wait()
    late = task.subscribe(5)
    seqs = [entry.seq async for batch in late.batches() for entry in batch]
    assert seqs == list(range(task.log.first_seq, task.log.last_seq + 1))
    assert late.dropped is None


async def _sized(token: CancellationToken) -> AsyncIterator[StepEvent]:
    # Frames of every header size: 7-bit, 16-bit and 64-bit lengths, and non-ASCII.
    for size in (0, 1, 60, 125, 126, 1000, 65_535, 65_536, 200_000):
        yield StepEvent(EventType.TOKEN, 1, {"delta": "x" * size})
    yield StepEvent(EventType.TOKEN, 1, {"delta": "naïve 東京 🚀"})
    yield StepEvent(EventType.FINAL_ANSWER, 1, {"output": "done"})


async def test_batched_frames_arrive_as_the_same_messages_in_order(
    jp_serverapp: Any, ws_connect: Callable[..., Awaitable[Any]]
) -> None:
    hub: TaskHub = jp_serverapp.web_app.settings["agentkit"].hub
    task = hub.run_source("sized", "q", _sized)
    await task.wait()  # all of it is in the log: the replay goes out in one batch
    for after in (0, 4):
        ws = await ws_connect(task.task_id, after=after, max_size=None)
        messages = await read_until_result(ws)
        logged = [json.loads(entry.data) for entry in task.log.read_after(after, 1 << 30)]
        assert [m for m in messages if "seq" in m] == logged
        deltas = [m["data"]["data"].get("delta") for m in messages if m["type"] == "step"]
        assert deltas[-2] == "naïve 東京 🚀"


async def test_each_event_is_serialised_once_whatever_the_number_of_subscribers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from agentkit_jupyter import protocol

    calls = 0
    real_dumps = protocol.dumps

    def counting_dumps(message: dict[str, Any]) -> str:
        nonlocal calls
        calls += 1
        return real_dumps(message)

    monkeypatch.setattr(protocol, "dumps", counting_dumps)
    hub = TaskHub(AgentPool())
    task = hub.run_source("burst", "q", _burst(300))
    subscriptions = [task.subscribe(0) for _ in range(20)]

    async def read(sub: Any) -> list[Any]:
        return [entry async for batch in sub.batches() for entry in batch]

    received = await asyncio.gather(*(read(sub) for sub in subscriptions))
    logged = task.log.read_after(0, 1 << 30)
    assert calls == len(logged) == task.log.last_seq
    for entries in received:  # the very same entries (and bytes) for everyone
        assert len(entries) == len(logged)
        assert all(a is b for a, b in zip(entries, logged, strict=True))
