"""A real MCP server for the tests (run as a script): stdio by default, ``--http PORT``
for streamable HTTP on 127.0.0.1.

    python tests/mcp_test_server.py [--name NAME] [--http PORT] [--record FILE]

Its tools cover what the client must handle: plain text, structured content, an
``isError`` result, an image, progress, a call that waits to be cancelled, a crash in
the middle of a call, annotations. ``--record FILE`` appends one JSON line per thing
the tests look for from outside: a ``notifications/cancelled`` received, a call
cancelled (with the wall-clock time, to compare with the client's), a start.
``cancellations`` returns the same records from inside the session.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from typing import Any

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.mcpserver.utilities.types import Image
from mcp.types import ToolAnnotations

# A 1x1 PNG.
PIXEL = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360000002000100e221bc330000000049454e44ae426082"
)

parser = argparse.ArgumentParser()
parser.add_argument("--name", default="testing")
parser.add_argument("--http", type=int, metavar="PORT")
parser.add_argument("--record", metavar="FILE")
args = parser.parse_args()

records: list[dict[str, Any]] = []


def record(kind: str, **details: Any) -> None:
    entry = {"kind": kind, "time": time.time(), "server": args.name, **details}
    records.append(entry)
    if args.record:
        with open(args.record, "a", encoding="utf-8") as out:
            out.write(json.dumps(entry) + "\n")


async def watch_cancellations(ctx: Any, call_next: Any) -> Any:
    if ctx.method == "notifications/cancelled":
        params = dict(ctx.params or {})
        record("notification", request_id=params.get("requestId"), reason=params.get("reason"))
    return await call_next(ctx)


server = MCPServer(args.name, middleware=[watch_cancellations])


@server.tool(annotations=ToolAnnotations(read_only_hint=True), structured_output=False)
def echo(text: str) -> str:
    """Say the text back."""
    return text


@server.tool(annotations=ToolAnnotations(read_only_hint=True))
def stats(numbers: list[float]) -> dict[str, float]:
    """Count, sum and mean of some numbers."""
    if not numbers:
        raise ToolError("no numbers to describe")
    return {"count": len(numbers), "sum": sum(numbers), "mean": sum(numbers) / len(numbers)}


@server.tool()
def fail(message: str) -> str:
    """Fail with this message (an isError result)."""
    raise ToolError(message)


@server.tool(annotations=ToolAnnotations(read_only_hint=True), structured_output=False)
def picture() -> list[Any]:
    """A tiny picture, and a caption."""
    return ["a red pixel", Image(data=PIXEL, format="png")]


@server.tool()
def search(query: str) -> str:
    """Search this server's documents (every test server has one: the names clash)."""
    return f"{args.name} found {query!r}"


@server.tool(annotations=ToolAnnotations(destructive_hint=True))
def drop_table(table: str) -> str:
    """Drop a table (destructive)."""
    return f"dropped {table}"


@server.tool(annotations=ToolAnnotations(destructive_hint=True))
def wipe_disk() -> str:
    """Wipe the disk (destructive, for the approval overrides)."""
    return "wiped"


@server.tool(annotations=ToolAnnotations(read_only_hint=True, destructive_hint=True))
def peek() -> str:
    """Read-only wins over a contradictory destructive hint."""
    return "peeked"


@server.tool(name="admin.list-users", structured_output=False)
def list_users() -> str:
    """A name the model would refuse as is."""
    return "alice, bob"


@server.tool()
async def slow(ctx: Context, steps: int = 3, delay: float = 0.05) -> str:
    """Report progress at every step, then finish; cancelled, it records when."""
    try:
        for done in range(1, steps + 1):
            await ctx.report_progress(done, steps, f"step {done} of {steps}")
            await asyncio.sleep(delay)
    except asyncio.CancelledError:
        record("call_cancelled", tool="slow")
        raise
    return f"finished {steps} steps"


@server.tool()
async def crash(ctx: Context) -> str:
    """Report progress once, then the process dies in the middle of the call."""
    await ctx.report_progress(1, 2, "about to crash")
    await asyncio.sleep(0.05)
    print("test server: crashing on purpose", file=sys.stderr, flush=True)
    os._exit(3)


@server.tool(annotations=ToolAnnotations(read_only_hint=True), structured_output=False)
def header(ctx: Context, name: str) -> str:
    """The value of a request header (over HTTP; empty over stdio)."""
    request = ctx.request_context.request
    headers = getattr(request, "headers", None)
    return str(headers.get(name, "")) if headers is not None else ""


@server.tool(annotations=ToolAnnotations(read_only_hint=True))
def cancellations() -> list[dict[str, Any]]:
    """What this server recorded so far (cancellations received, calls cancelled)."""
    return records


if __name__ == "__main__":
    print(f"test server {args.name} starting", file=sys.stderr, flush=True)
    record("started", pid=os.getpid())
    if args.http is not None:
        server.run("streamable-http", host="127.0.0.1", port=args.http)
    else:
        server.run()
