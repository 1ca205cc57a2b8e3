"""Where sync tools run: a bounded pool of daemon threads, or (``isolate="process"``)
a pool of worker processes that a cancel or a timeout kills for real.

A sync tool holds the GIL while it computes: in a Jupyter server every user waits for
it. Threads cannot be stopped, so a cancelled or timed-out call keeps its thread until
it returns by itself (it is *abandoned*: :func:`abandoned_threads` counts them, and the
``cancelled`` event names the tools in ``background``). A tool declared with
``@tool(isolate="process")`` runs in a separate process instead: the server's
interpreter stays free, and a cancel or timeout kills that process.
"""

from __future__ import annotations

import asyncio
import atexit
import importlib
import multiprocessing
import multiprocessing.connection
import os
import signal
import sys
import threading
from collections import deque
from collections.abc import Callable
from typing import Any

__all__ = [
    "IsolationError",
    "abandoned_threads",
    "configure_tool_workers",
    "run_in_process",
    "run_in_thread",
    "worker_stats",
]

# A worker thread with nothing to do for this long ends (it is started again on demand).
THREAD_IDLE_SECONDS = 60.0


def _default_threads() -> int:
    return min(32, (os.cpu_count() or 1) + 4)


def _default_processes() -> int:
    return max(1, min(8, os.cpu_count() or 1))


class IsolationError(RuntimeError):
    """A tool cannot run in a worker process (not importable, or a result that cannot
    be sent back)."""


# -- threads ----------------------------------------------------------------------------


class _Job:
    __slots__ = ("args", "deliver", "func", "name", "state")

    def __init__(
        self, func: Callable[..., Any], args: dict[str, Any], name: str, deliver: Any
    ) -> None:
        self.func = func
        self.args = args
        self.name = name
        self.deliver = deliver
        self.state = "queued"  # queued, running, done, dropped (never ran)

    @property
    def running(self) -> bool:
        return self.state == "running"


class _ThreadPool:
    """Daemon worker threads, at most ``max_workers``; calls beyond that wait their turn.

    Daemon threads, unlike ``ThreadPoolExecutor``'s: an abandoned call that never
    returns must not keep the process from exiting.
    """

    def __init__(self, max_workers: int) -> None:
        self.max_workers = max_workers
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._jobs: deque[_Job] = deque()
        self._workers = 0
        self._idle = 0
        self._abandoned: set[_Job] = set()

    def submit(self, job: _Job) -> None:
        with self._lock:
            self._jobs.append(job)
            if self._idle:
                self._wake.notify()
            elif self._workers < self.max_workers:
                self._workers += 1
                threading.Thread(
                    target=self._work, name=f"agentkit-tool-{self._workers}", daemon=True
                ).start()

    def leave(self, job: _Job) -> None:
        """The caller stopped waiting (cancel, timeout): drop the job or abandon it."""
        with self._lock:
            if job.state == "queued":
                job.state = "dropped"
            elif job.state == "running":
                self._abandoned.add(job)

    def stats(self) -> dict[str, int]:
        with self._lock:
            return {
                "max": self.max_workers,
                "threads": self._workers,
                "busy": self._workers - self._idle,
                "queued": sum(1 for job in self._jobs if job.state == "queued"),
                "abandoned": len(self._abandoned),
            }

    def _work(self) -> None:
        while True:
            with self._lock:
                while not self._jobs:
                    self._idle += 1
                    woke = self._wake.wait(THREAD_IDLE_SECONDS)
                    self._idle -= 1
                    if not woke and not self._jobs:
                        self._workers -= 1
                        return
                job = self._jobs.popleft()
                if job.state != "queued":
                    continue
                job.state = "running"
            try:
                outcome: tuple[bool, Any] = (True, job.func(**job.args))
            except BaseException as exc:  # delivered to the awaiting coroutine
                outcome = (False, exc)
            with self._lock:
                job.state = "done"
                self._abandoned.discard(job)
            job.deliver(*outcome)
            del job, outcome  # do not keep the last result alive while idle


_threads = _ThreadPool(_default_threads())


async def run_in_thread(
    func: Callable[..., Any],
    args: dict[str, Any],
    name: str,
    track: list[_Job] | None = None,
) -> Any:
    """``func(**args)`` on a pool thread; a cancel abandons a running call (it finishes
    by itself) and drops one still waiting for a thread. ``track`` gets the job (its
    ``running`` says whether it still runs)."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[Any] = loop.create_future()

    def settle(ok: bool, value: Any) -> None:
        if future.done():
            return
        if ok:
            future.set_result(value)
        else:
            future.set_exception(value)

    def deliver(ok: bool, value: Any) -> None:
        try:
            loop.call_soon_threadsafe(settle, ok, value)
        except RuntimeError:
            pass  # the loop closed while the tool ran: nobody is waiting

    job = _Job(func, args, name, deliver)
    if track is not None:
        track.append(job)
    _threads.submit(job)
    try:
        return await future
    finally:
        # A cancel also cancels ``future``: look at the job, not at the future.
        if job.state != "done":
            _threads.leave(job)


def abandoned_threads() -> int:
    """How many pool threads still run a call whose caller gave up (a cancel or a
    timeout): they finish by themselves, or never, and hold a worker meanwhile."""
    return _threads.stats()["abandoned"]


# -- processes --------------------------------------------------------------------------


def _context() -> Any:
    # forkserver: safe in a process with threads (the server has several), and cheaper
    # than spawn once the server process exists.
    method = "forkserver" if sys.platform != "win32" else "spawn"
    return multiprocessing.get_context(method)


class _Worker:
    def __init__(self) -> None:
        parent, child = multiprocessing.Pipe()
        self.process = _context().Process(
            target=_worker_main, args=(child,), name="agentkit-tool-process", daemon=True
        )
        self.process.start()
        child.close()
        self.conn: multiprocessing.connection.Connection = parent

    def kill(self) -> None:
        try:
            self.process.kill()
            self.process.join(5)
        except (OSError, ValueError, AssertionError):
            pass
        try:
            self.conn.close()
        except OSError:
            pass


class _ProcessPool:
    def __init__(self, max_workers: int) -> None:
        self.max_workers = max_workers
        self._lock = threading.Lock()
        self._idle: list[_Worker] = []
        self._busy: set[_Worker] = set()
        self._waiters: deque[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = deque()
        self._starting = 0
        self.killed = 0

    async def acquire(self) -> _Worker:
        while True:
            with self._lock:
                while self._idle:
                    worker = self._idle.pop()
                    if worker.process.is_alive():
                        self._busy.add(worker)
                        return worker
                    worker.kill()
                start = len(self._busy) + self._starting < self.max_workers
                if start:
                    self._starting += 1
                else:
                    waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
                    self._waiters.append((asyncio.get_running_loop(), waiter))
            if start:
                return await self._start()
            await waiter

    async def _start(self) -> _Worker:
        starting = asyncio.ensure_future(asyncio.to_thread(_Worker))
        try:
            worker = await asyncio.shield(starting)
        except asyncio.CancelledError:
            # Cancelled while the process starts: it joins the idle ones when ready.
            starting.add_done_callback(self._started_unused)
            raise
        except BaseException:
            with self._lock:
                self._starting -= 1
            raise
        with self._lock:
            self._starting -= 1
            self._busy.add(worker)
        return worker

    def _started_unused(self, starting: asyncio.Future[_Worker]) -> None:
        with self._lock:
            self._starting -= 1
            if not starting.cancelled() and starting.exception() is None:
                self._idle.append(starting.result())
        self._wake_one()

    def release(self, worker: _Worker, reusable: bool) -> None:
        if not reusable:
            worker.kill()
        with self._lock:
            self._busy.discard(worker)
            if reusable:
                self._idle.append(worker)
            else:
                self.killed += 1
        self._wake_one()

    def _wake_one(self) -> None:
        with self._lock:
            while self._waiters:
                loop, waiter = self._waiters.popleft()
                if waiter.done():
                    continue  # its caller was cancelled while it waited
                try:
                    loop.call_soon_threadsafe(_wake, waiter)
                except RuntimeError:
                    continue
                return

    def stats(self) -> dict[str, int]:
        with self._lock:
            return {
                "max": self.max_workers,
                "processes": len(self._idle) + len(self._busy),
                "busy": len(self._busy),
                "killed": self.killed,
            }

    def shutdown(self) -> None:
        with self._lock:
            workers = [*self._idle, *self._busy]
            self._idle.clear()
        for worker in workers:
            worker.kill()


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


_processes = _ProcessPool(_default_processes())
atexit.register(_processes.shutdown)


def _reference(func: Callable[..., Any]) -> tuple[str, str]:
    """The import path of ``func``, checked: a worker process imports it by name."""
    module, qualname = getattr(func, "__module__", None), getattr(func, "__qualname__", "")
    if not module or module == "__main__" or "<" in qualname:
        raise IsolationError(
            f"{qualname or func!r} cannot run in a worker process: isolate='process' needs "
            "a function defined at the top level of an importable module (not in a "
            "notebook cell, a script's __main__ or another function)."
        )
    if _resolve(module, qualname) is not func:
        raise IsolationError(f"{module}.{qualname} does not name this function.")
    return module, qualname


def _resolve(module: str, qualname: str) -> Any:
    target: Any = importlib.import_module(module)
    for part in qualname.split("."):
        target = getattr(target, part)
    inner = getattr(target, "func", None)  # a Tool made by @tool: call its function
    return inner if callable(inner) and not isinstance(target, type) else target


def _worker_main(conn: multiprocessing.connection.Connection) -> None:
    """A worker process: run calls until the pipe closes (the parent went away)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a kernel interrupt is not for us
    while True:
        try:
            module, qualname, args = conn.recv()
        except (EOFError, OSError):
            return
        try:
            reply: tuple[bool, Any] = (True, _resolve(module, qualname)(**args))
        except BaseException as exc:
            reply = (False, exc)
        try:
            conn.send(reply)
        except Exception as exc:  # the result or the exception does not pickle
            kind = "result" if reply[0] else "exception"
            conn.send((False, IsolationError(f"the tool's {kind} cannot be sent back: {exc}")))


async def _readable(conn: multiprocessing.connection.Connection) -> None:
    loop = asyncio.get_running_loop()
    ready: asyncio.Future[None] = loop.create_future()
    fd = conn.fileno()
    try:
        loop.add_reader(fd, _wake, ready)
    except NotImplementedError:  # a loop without readers (Windows' proactor)
        await asyncio.to_thread(conn.poll, None)
        return
    try:
        await ready
    finally:
        loop.remove_reader(fd)


async def run_in_process(func: Callable[..., Any], args: dict[str, Any]) -> Any:
    """``func(**args)`` in a pooled worker process. A cancel (or a timeout around this
    call) kills the worker: nothing of the call keeps running."""
    module, qualname = _reference(func)
    worker = await _processes.acquire()
    reusable = False
    try:
        worker.conn.send((module, qualname, args))
        await _readable(worker.conn)
        try:
            ok, value = await asyncio.to_thread(worker.conn.recv)
        except (EOFError, OSError):
            code = worker.process.exitcode
            raise IsolationError(
                f"the worker process running {qualname} died (exit code {code})."
            ) from None
        reusable = True
    finally:
        _processes.release(worker, reusable)
    if ok:
        return value
    raise value


def worker_stats() -> dict[str, dict[str, int]]:
    """Counts for a status endpoint: ``threads`` (``max``, ``threads``, ``busy``,
    ``queued``, ``abandoned``) and ``processes`` (``max``, ``processes``, ``busy``,
    ``killed``)."""
    return {"threads": _threads.stats(), "processes": _processes.stats()}


def configure_tool_workers(
    max_threads: int | None = None, max_processes: int | None = None
) -> None:
    """Change the pools' bounds (threads for sync tools, processes for isolated ones)."""
    if max_threads is not None:
        if max_threads < 1:
            raise ValueError("max_threads must be at least 1")
        _threads.max_workers = max_threads
    if max_processes is not None:
        if max_processes < 1:
            raise ValueError("max_processes must be at least 1")
        _processes.max_workers = max_processes
