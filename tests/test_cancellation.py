"""CancellationToken: once, idempotent, awaitable, callbacks, racing, thread-safe."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from agentkit_jupyter.core import CancellationToken, OperationCancelled


async def test_cancel_once_with_reason_and_callbacks() -> None:
    token = CancellationToken()
    seen: list[str | None] = []
    token.add_callback(seen.append)
    removed = token.add_callback(lambda r: seen.append("removed"))
    removed()
    assert token.cancel("user asked") is True
    assert token.cancel("again") is False
    assert token.cancelled and token.reason == "user asked"
    assert seen == ["user asked"]
    late: list[str | None] = []
    token.add_callback(late.append)  # already cancelled: called at once
    assert late == ["user asked"]
    assert await token.wait() == "user asked"


async def test_race_interrupts_an_in_flight_await() -> None:
    token = CancellationToken()
    interrupted = asyncio.Event()

    async def slow() -> str:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            interrupted.set()
            raise
        return "done"

    asyncio.get_running_loop().call_later(0.05, token.cancel, "stop")
    started = time.perf_counter()
    with pytest.raises(OperationCancelled) as info:
        await token.race(slow())
    assert time.perf_counter() - started < 1.0
    assert info.value.reason == "stop"
    await asyncio.wait_for(interrupted.wait(), 1)
    assert await CancellationToken().race(asyncio.sleep(0, "value")) == "value"


async def test_cancel_from_another_thread_wakes_waiters() -> None:
    token = CancellationToken()
    thread = threading.Timer(0.05, token.cancel, args=("from a thread",))
    thread.start()
    assert await asyncio.wait_for(token.wait(), 2) == "from a thread"
    thread.join()
