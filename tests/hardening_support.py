"""Helpers of the hardening tests: the in-process extension, and its log at DEBUG level."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import Any

from agentkit_jupyter.core import Agent, LLMGateway, ModelRequest, ModelTurn, TokenDelta
from agentkit_jupyter.server.app import AgentKitExtension


def extension(serverapp: Any) -> AgentKitExtension:
    """The running extension of pytest-jupyter's in-process server."""
    return serverapp.web_app.settings["agentkit"]  # type: ignore[no-any-return]


class LogCapture(logging.Handler):
    """Every record, formatted with its traceback, as one text to search."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


@contextmanager
def server_log(serverapp: Any) -> Iterator[LogCapture]:
    """Capture, at DEBUG level, what the server, the extension, Tornado and the package log."""
    capture = LogCapture()
    loggers = {
        serverapp.log,
        extension(serverapp).log,
        logging.getLogger(),
        logging.getLogger("tornado"),
        logging.getLogger("tornado.access"),
        logging.getLogger("tornado.application"),
        logging.getLogger("tornado.general"),
        logging.getLogger("agentkit_jupyter"),
    }
    levels = {logger: logger.level for logger in loggers}
    for logger in loggers:
        logger.addHandler(capture)
        logger.setLevel(logging.DEBUG)
    try:
        yield capture
    finally:
        for logger, level in levels.items():
            logger.removeHandler(capture)
            logger.setLevel(level)


# -- agents: one failing with a secret in its exception, one sending big messages -------

SECRET_IN_EXCEPTION = "postgres://admin:hunter2-7c1e@db.internal:5432/agents"


class LeakyGateway(LLMGateway):
    """A model gateway whose unexpected exception carries a secret in its text."""

    async def stream(self, request: ModelRequest) -> AsyncIterator[TokenDelta | ModelTurn]:
        raise RuntimeError(f"could not connect to {SECRET_IN_EXCEPTION}")
        yield  # pragma: no cover


class BigTokensGateway(LLMGateway):
    """``count`` token events of ``size`` characters each, as fast as they are taken,
    without the conversation growing (unlike a tool returning big outputs)."""

    def __init__(self, count: int, size: int, pause_every: int = 0) -> None:
        self.count = count
        self.size = size
        self.pause_every = pause_every

    async def stream(self, request: ModelRequest) -> AsyncIterator[TokenDelta | ModelTurn]:
        piece = "x" * self.size
        for index in range(self.count):
            if self.pause_every and index % self.pause_every == 0:
                await asyncio.sleep(0.001)
            yield TokenDelta(piece)
        yield ModelTurn(text="done")


def big_tokens(name: str, count: int, size: int, pause_every: int = 0) -> Agent:
    gateway = BigTokensGateway(count, size, pause_every)
    return Agent(name, gateway, description=f"{count} x {size} chars")


def hardening_agents() -> list[Agent]:
    """For ``--AgentKitExtension.agents=hardening_support:hardening_agents``."""
    return [
        Agent("leaky", LeakyGateway(), description="Fails with a secret in its exception"),
        big_tokens("big-tokens", 300, 64 * 1024),  # about 20 MB, fast
    ]


# Arguments for a ServerProcess that hosts only this extension: starts twice as fast.
ONLY_AGENTKIT = tuple(
    f"--ServerApp.jpserver_extensions={name}=False"
    for name in (
        "jupyterlab",
        "notebook",
        "notebook_shim",
        "jupyter_lsp",
        "jupyter_server_terminals",
    )
)
