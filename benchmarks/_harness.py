"""Shared pieces of the benchmarks: a real server process and a timing client."""

from __future__ import annotations

import json
import platform
import statistics
import sys
import time
from pathlib import Path

import httpx
from websockets.sync.client import connect

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from server_process import ServerProcess  # noqa: E402

__all__ = ["ServerProcess", "machine", "median", "run_firehose", "table"]


def machine() -> str:
    import os

    cpu = platform.processor() or platform.machine()
    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}"


def median(values: list[float]) -> float:
    return statistics.median(values)


def run_firehose(server: ServerProcess, count: int) -> tuple[int, float]:
    """Start bench-firehose with ``count`` events; read the whole stream on one
    WebSocket. Returns (messages received, seconds from creation to the result)."""
    started = time.perf_counter()
    response = httpx.post(
        server.api("tasks"),
        json={"agent": "bench-firehose", "input": str(count)},
        headers=server.headers,
    )
    task_id = response.json()["task_id"]
    received = 0
    last = 0
    with connect(server.ws(task_id), additional_headers=server.headers, max_size=None) as ws:
        while True:
            message = json.loads(ws.recv(timeout=120))
            if "seq" in message:
                assert message["seq"] == last + 1, "gap in the stream"
                last = message["seq"]
                received += 1
            if message["type"] == "result":
                break
    return received, time.perf_counter() - started


def table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    line = "| " + " | ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)) + " |"
    rule = "| " + " | ".join("-" * w for w in widths) + " |"
    body = [
        "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |" for r in rows
    ]
    return "\n".join([line, rule, *body])
