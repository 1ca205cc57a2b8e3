"""A real redis-server for the tests: one per session on a free loopback port.

A pytest plugin (named in conftest.py's ``pytest_plugins``): the ``redis_server``
fixture starts Debian's ``redis-server`` (scripts/test.sh installs it) with no
persistence in a temp folder, waits for PING and stops it at the end. Without
redis-server the tests that need it skip, except on CI (``CI`` set), where they
fail: CI must not go green without them. :class:`RedisServer` also starts extra
servers inside a test (persistence, Redis going away).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

START_TIMEOUT_SECONDS = 10.0


def require_redis_server(executable: str | None, *, on_ci: bool) -> str:
    """The redis-server to run; skip without one, or fail on CI."""
    if executable is None:
        message = (
            "redis-server is not installed (apt-get install redis-server); "
            "the Redis backend tests need a real Redis"
        )
        if on_ci:
            pytest.fail(message)
        pytest.skip(message)
    return executable


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class RedisServer:
    """A redis-server subprocess on 127.0.0.1; ``url`` is what clients connect to."""

    executable: str
    folder: Path
    port: int = field(default_factory=free_port)
    appendonly: bool = False
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        self.folder.mkdir(parents=True, exist_ok=True)
        command = [
            self.executable,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "yes" if self.appendonly else "no",
            "--appendfsync", "always",
            "--dir", str(self.folder),
            "--daemonize", "no",
            "--protected-mode", "no",
        ]  # fmt: skip
        with open(self.folder / "redis.log", "ab") as log_file:  # the child keeps its copy
            self.process = subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while not self.ping():
            if self.process.poll() is not None or time.monotonic() > deadline:
                log = (self.folder / "redis.log").read_text(errors="replace")
                self.stop()
                raise RuntimeError(f"redis-server did not start:\n{log[-2000:]}")
            time.sleep(0.02)
        return self

    def ping(self) -> bool:
        """PING over a plain socket: no client library needed to know it is up."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self) -> None:
        """SIGTERM: Redis writes its append-only file and exits."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def kill(self) -> None:
        """SIGKILL: Redis gone at once, as in a crash."""
        if self.process is not None:
            self.process.kill()
            self.process.wait()
        self.process = None


def redis_executable() -> str:
    return require_redis_server(shutil.which("redis-server"), on_ci=bool(os.environ.get("CI")))


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    executable = redis_executable()
    folder = Path(tempfile.mkdtemp(prefix="agentkit-redis-"))
    server = RedisServer(executable, folder).start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(folder, ignore_errors=True)
