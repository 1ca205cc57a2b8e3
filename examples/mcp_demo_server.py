"""A small MCP server over a SQLite shop (products and orders), for the demos and tests.

    python examples/mcp_demo_server.py              # stdio: what MCPServer(command=[...]) starts
    python examples/mcp_demo_server.py --http 8000  # streamable HTTP, http://127.0.0.1:8000/mcp

The data set is created at start, in memory (``--db PATH`` keeps it in a file), so every
start is the same shop. Its tools:

- ``list_tables`` and ``query`` (read-only, ``readOnlyHint``): the tables, and one
  read-only SQL query;
- ``revenue_report`` (read-only, slow): revenue per region, one region at a time, with
  a progress notification after each;
- ``delete_orders`` (``destructiveHint``): deletes orders by status; an agent asks a
  person before it runs.

Uses the official MCP Python SDK (``pip install "mcp>=2.3"``), whose ``MCPServer`` is
what older releases called ``FastMCP``.
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import threading
from typing import Any

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import ToolAnnotations

PRODUCTS = [
    (1, "desk lamp", "lighting", 35.0),
    (2, "standing desk", "furniture", 420.0),
    (3, "office chair", "furniture", 260.0),
    (4, "monitor arm", "accessories", 89.0),
    (5, "cable tray", "accessories", 24.0),
]
# (id, product_id, region, quantity, status)
ORDERS = [
    (101, 1, "EMEA", 12, "shipped"),
    (102, 2, "EMEA", 3, "shipped"),
    (103, 3, "AMER", 5, "shipped"),
    (104, 2, "AMER", 4, "pending"),
    (105, 4, "APAC", 10, "shipped"),
    (106, 5, "APAC", 40, "pending"),
    (107, 1, "AMER", 8, "test"),
    (108, 3, "EMEA", 1, "test"),
    (109, 2, "APAC", 2, "shipped"),
]
MAX_ROWS = 100


def create_shop(path: str = ":memory:") -> sqlite3.Connection:
    """The shop's database, filled with the same few rows on every start."""
    db = sqlite3.connect(path, check_same_thread=False)  # sync tools run on worker threads
    db.row_factory = sqlite3.Row
    with db:
        db.executescript(
            """
            DROP TABLE IF EXISTS orders;
            DROP TABLE IF EXISTS products;
            CREATE TABLE products (
                id INTEGER PRIMARY KEY, name TEXT NOT NULL, category TEXT NOT NULL,
                price REAL NOT NULL
            );
            CREATE TABLE orders (
                id INTEGER PRIMARY KEY, product_id INTEGER NOT NULL REFERENCES products(id),
                region TEXT NOT NULL, quantity INTEGER NOT NULL, status TEXT NOT NULL
            );
            """
        )
        db.executemany("INSERT INTO products VALUES (?, ?, ?, ?)", PRODUCTS)
        db.executemany("INSERT INTO orders VALUES (?, ?, ?, ?, ?)", ORDERS)
    return db


server = MCPServer(
    "shop",
    instructions="A shop's products and orders in SQLite: look, report, and clean up.",
)
_db = create_shop()
_lock = threading.Lock()


@server.tool(annotations=ToolAnnotations(read_only_hint=True))
def list_tables() -> dict[str, list[str]]:
    """The tables of the shop database, with their columns."""
    with _lock:
        tables = [r[0] for r in _db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        return {t: [c[1] for c in _db.execute(f"PRAGMA table_info({t})")] for t in tables}


@server.tool(annotations=ToolAnnotations(read_only_hint=True))
def query(sql: str) -> list[dict[str, Any]]:
    """Run one read-only SQL query on the shop database (at most 100 rows).

    Args:
        sql: a single SELECT statement, e.g. SELECT region, COUNT(*) FROM orders GROUP BY region
    """
    with _lock:
        _db.execute("PRAGMA query_only = ON")  # anything but a read fails
        try:
            rows = _db.execute(sql).fetchmany(MAX_ROWS)
        except sqlite3.Error as exc:
            raise ToolError(f"the query failed: {exc}") from exc
        finally:
            _db.execute("PRAGMA query_only = OFF")
    return [dict(row) for row in rows]


@server.tool(annotations=ToolAnnotations(read_only_hint=True))
async def revenue_report(ctx: Context, delay: float = 0.3) -> dict[str, float]:
    """Revenue of the shipped orders per region (slow: it reports progress).

    One region at a time, with a progress notification after each.

    Args:
        delay: seconds spent on each region.
    """
    with _lock:
        regions = [r[0] for r in _db.execute("SELECT DISTINCT region FROM orders ORDER BY 1")]
    report: dict[str, float] = {}
    for done, region in enumerate(regions, start=1):
        await asyncio.sleep(delay)
        with _lock:
            (revenue,) = _db.execute(
                "SELECT COALESCE(SUM(o.quantity * p.price), 0) FROM orders o "
                "JOIN products p ON p.id = o.product_id "
                "WHERE o.region = ? AND o.status = 'shipped'",
                (region,),
            ).fetchone()
        report[region] = float(revenue)
        await ctx.report_progress(done, len(regions), f"{region}: {revenue:,.0f}")
    return report


@server.tool(annotations=ToolAnnotations(destructive_hint=True))
def delete_orders(status: str) -> str:
    """Delete every order with this status. It cannot be undone.

    Args:
        status: the orders' status, e.g. "test" or "pending".
    """
    with _lock, _db:
        deleted = _db.execute("DELETE FROM orders WHERE status = ?", (status,)).rowcount
    return f"Deleted {deleted} order(s) with status {status!r}."


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--http", type=int, metavar="PORT", help="serve streamable HTTP")
    parser.add_argument("--db", help="a SQLite file instead of memory (recreated)")
    args = parser.parse_args()
    if args.db:
        global _db
        _db = create_shop(args.db)
    if args.http is not None:
        server.run("streamable-http", host="127.0.0.1", port=args.http)
    else:
        server.run()


if __name__ == "__main__":
    main()
