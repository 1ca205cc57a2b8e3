"""Cooperative cancellation that can interrupt an in-flight await, not just a loop."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")

CancelCallback = Callable[[str | None], None]


class OperationCancelled(Exception):
    """Raised by :meth:`CancellationToken.race` when the token wins the race."""

    def __init__(self, reason: str | None = None) -> None:
        super().__init__(reason or "cancelled")
        self.reason = reason


class CancellationToken:
    """A one-shot cancel signal shared by whoever runs a task and whoever may stop it.

    ``cancel()`` may be called from any thread; the first call wins and later calls
    are no-ops. Waiters and callbacks are notified exactly once.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cancelled = False
        self._reason: str | None = None
        self._callbacks: list[CancelCallback] = []
        self._waiters: list[asyncio.Future[None]] = []

    @property
    def cancelled(self) -> bool:
        return self._cancelled

    @property
    def reason(self) -> str | None:
        return self._reason

    def cancel(self, reason: str | None = None) -> bool:
        """Cancel once. Returns True for the call that actually cancelled."""
        with self._lock:
            if self._cancelled:
                return False
            self._cancelled = True
            self._reason = reason
            callbacks, self._callbacks = self._callbacks, []
            waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            _resolve_threadsafe(waiter)
        for callback in callbacks:
            callback(reason)
        return True

    def add_callback(self, callback: CancelCallback) -> Callable[[], None]:
        """Call ``callback(reason)`` on cancel (at once if already cancelled).

        Returns a function that unregisters the callback.
        """
        with self._lock:
            if not self._cancelled:
                self._callbacks.append(callback)

                def remove() -> None:
                    with self._lock:
                        if callback in self._callbacks:
                            self._callbacks.remove(callback)

                return remove
        callback(self._reason)
        return lambda: None

    async def wait(self) -> str | None:
        """Wait until cancelled; returns the reason."""
        loop = asyncio.get_running_loop()
        with self._lock:
            if self._cancelled:
                return self._reason
            waiter: asyncio.Future[None] = loop.create_future()
            self._waiters.append(waiter)
        try:
            await waiter
        finally:
            with self._lock:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)
        return self._reason

    async def race(self, awaitable: Awaitable[T]) -> T:
        """Await ``awaitable`` unless the token is cancelled first.

        On cancel the awaitable's task is cancelled at once and
        :class:`OperationCancelled` is raised.
        """
        if self._cancelled:
            if asyncio.iscoroutine(awaitable):
                awaitable.close()
            raise OperationCancelled(self._reason)
        work = asyncio.ensure_future(awaitable)
        stop = asyncio.ensure_future(self.wait())
        try:
            await asyncio.wait({work, stop}, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            work.cancel()
            raise
        finally:
            stop.cancel()
        if work.done():
            return work.result()
        work.cancel()
        raise OperationCancelled(self._reason)


def _resolve_threadsafe(future: asyncio.Future[None]) -> None:
    def resolve() -> None:
        if not future.done():
            future.set_result(None)

    loop = future.get_loop()
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if running is loop:
        resolve()
    elif not loop.is_closed():
        loop.call_soon_threadsafe(resolve)
