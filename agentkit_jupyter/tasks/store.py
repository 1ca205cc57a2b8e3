"""Task history on disk: an embedded SQLite database behind the hub.

Writes are gathered in a pending list that one writer thread takes as a whole
and commits in one transaction: the event loop never waits on disk, a fast
stream is written in large batches, and because batches commit in order, what
is on disk is always a gap-free prefix of each task's log. A crash loses at most
the batch in flight (well under a second of events). Consecutive events of a
task are gathered into one run as they come (a list append on the event loop),
so the writer does no per-event Python work to compete for the GIL with it.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1

# MIGRATIONS[n] takes a database at version n - 1 to version n.
MIGRATIONS: dict[int, list[str]] = {
    1: [
        """CREATE TABLE tasks (
            task_id TEXT PRIMARY KEY,
            agent TEXT NOT NULL,
            input TEXT NOT NULL,
            status TEXT NOT NULL,
            origin TEXT NOT NULL,
            created_at REAL NOT NULL,
            started_at REAL,
            finished_at REAL,
            result TEXT
        )""",
        """CREATE TABLE events (
            task_id TEXT NOT NULL,
            seq INTEGER NOT NULL,
            message TEXT NOT NULL,
            PRIMARY KEY (task_id, seq)
        ) WITHOUT ROWID""",
        "CREATE INDEX tasks_created ON tasks (created_at)",
    ],
}

# How long the writer lets a batch gather.
GATHER_SECONDS = 0.05


class StoreError(RuntimeError):
    pass


@dataclass(frozen=True, slots=True)
class StoredTask:
    record: dict[str, Any]
    first_seq: int
    events: list[str]


class _EventRun:
    """Consecutive events of one task, gathered for one INSERT."""

    __slots__ = ("first_seq", "task_id", "texts")

    def __init__(self, task_id: str, first_seq: int, text: str) -> None:
        self.task_id = task_id
        self.first_seq = first_seq
        self.texts = [text]


# ("task", record) | ("events", _EventRun) | ("delete", task_id) | ("barrier", Event)
_Op = tuple[str, Any]


class TaskStore:
    """SQLite persistence of tasks and their events (``":memory:"`` for tests)."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        self.moved_aside: Path | None = None
        self._connection = self._open()
        self._pending: list[_Op] = []
        self._pending_lock = threading.Lock()
        self._wakeup = threading.Event()  # set when _pending may have something
        self._stopping = False
        self._lock = threading.Lock()  # the connection is shared by the writer and readers
        self._failed = False
        self._writer = threading.Thread(target=self._write_loop, name="agentkit-store", daemon=True)
        self._writer.start()

    # -- opening, corruption and migrations --------------------------------------------

    def _open(self) -> sqlite3.Connection:
        if self.path == ":memory:":
            return self._connect()
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        try:
            return self._connect()
        except sqlite3.DatabaseError as exc:
            if isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc):
                raise StoreError(f"the task database {self.path} is in use: {exc}") from exc
            self.moved_aside = self._move_aside(exc)
            return self._connect()

    def _connect(self) -> sqlite3.Connection:
        connection = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        try:
            check = connection.execute("PRAGMA quick_check").fetchone()
            if check is None or check[0] != "ok":
                raise sqlite3.DatabaseError(f"integrity check failed: {check}")
            # Refuse a newer schema before changing anything in the file.
            version = connection.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise StoreError(
                    f"the task database {self.path} has schema version {version}, newer "
                    f"than this agentkit-jupyter understands ({SCHEMA_VERSION}); upgrade "
                    "the package"
                )
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=NORMAL")
            self._migrate(connection, version)
        except BaseException:
            connection.close()
            raise
        return connection

    def _migrate(self, connection: sqlite3.Connection, version: int) -> None:
        for target in range(version + 1, SCHEMA_VERSION + 1):
            connection.execute("BEGIN")
            for statement in MIGRATIONS[target]:
                connection.execute(statement)
            connection.execute(f"PRAGMA user_version = {target}")
            connection.execute("COMMIT")

    def _move_aside(self, error: Exception) -> Path:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        target = Path(f"{self.path}.corrupt-{stamp}")
        for suffix in ("", "-wal", "-shm"):
            source = Path(self.path + suffix)
            if source.exists():
                source.rename(Path(str(target) + suffix))
        log.error(
            "agentkit: the task database %s could not be read (%s); it was moved to %s "
            "and a new one started",
            self.path,
            error,
            target,
        )
        return target

    # -- writes (from the event loop: never blocks) ------------------------------------

    def save_task(self, record: dict[str, Any]) -> None:
        self._put(("task", record))

    def append_event(self, task_id: str, seq: int, message: str) -> None:
        with self._pending_lock:
            if self._pending:
                kind, last = self._pending[-1]
                if (
                    kind == "events"
                    and last.task_id == task_id
                    and last.first_seq + len(last.texts) == seq
                ):
                    last.texts.append(message)  # the writer is already awake for it
                    return
            self._pending.append(("events", _EventRun(task_id, seq, message)))
        self._wakeup.set()

    def delete_task(self, task_id: str) -> None:
        self._put(("delete", task_id))

    def flush(self, timeout: float = 10.0) -> None:
        """Wait until everything queued so far is on disk."""
        done = threading.Event()
        self._put(("barrier", done))
        if not done.wait(timeout):
            raise StoreError("the task database did not catch up in time")

    def close(self) -> None:
        if self._writer.is_alive():
            with self._pending_lock:
                self._stopping = True
            self._wakeup.set()
            self._writer.join(30)
        with self._lock:
            self._connection.close()

    def _put(self, op: _Op) -> None:
        with self._pending_lock:
            self._pending.append(op)
        self._wakeup.set()

    def _write_loop(self) -> None:
        while True:
            self._wakeup.wait()
            if not self._stopping:
                time.sleep(GATHER_SECONDS)  # let a batch gather
            with self._pending_lock:
                # Anything added after this takes the new list and sets the event again.
                batch, self._pending = self._pending, []
                self._wakeup.clear()
                stopping = self._stopping
            if batch:
                self._commit(batch)
            del batch  # not kept alive (the texts of a whole batch) until the next one
            if stopping:
                return

    def _commit(self, batch: list[_Op]) -> None:
        barriers = [value for kind, value in batch if kind == "barrier"]
        if not self._failed:
            try:
                with self._lock:
                    self._apply(batch)
            except sqlite3.Error:
                # Disk full, file removed...: keep serving from memory, say it once.
                self._failed = True
                log.exception("agentkit: writing the task database %s failed", self.path)
        for barrier in barriers:
            barrier.set()

    def _apply(self, batch: list[_Op]) -> None:
        db = self._connection
        db.execute("BEGIN")
        try:
            for kind, value in batch:
                if kind == "events":
                    self._insert_events(value)
                elif kind == "task":
                    db.execute(
                        "INSERT OR REPLACE INTO tasks VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        _task_row(value),
                    )
                elif kind == "delete":
                    db.execute("DELETE FROM events WHERE task_id = ?", (value,))
                    db.execute("DELETE FROM tasks WHERE task_id = ?", (value,))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def _insert_events(self, run: _EventRun) -> None:
        """Insert consecutive events of one task in one statement.

        One call with the texts as a JSON array lets SQLite do the loop without the
        GIL, instead of binding each row from Python while the event loop waits.
        """
        self._connection.execute(
            "INSERT OR IGNORE INTO events (task_id, seq, message) "
            "SELECT ?, ? + CAST(key AS INTEGER), value FROM json_each(?)",
            (run.task_id, run.first_seq, json.dumps(run.texts)),
        )

    # -- reads (at start-up) ------------------------------------------------------------

    def load(self, max_events_per_task: int) -> list[StoredTask]:
        """Every stored task, oldest first, with its last ``max_events_per_task`` events."""
        with self._lock:
            rows = self._connection.execute(
                "SELECT task_id, agent, input, status, origin, created_at, started_at, "
                "finished_at, result FROM tasks ORDER BY created_at"
            ).fetchall()
            stored = []
            for row in rows:
                record = _task_record(row)
                events = self._connection.execute(
                    "SELECT seq, message FROM events WHERE task_id = ? ORDER BY seq DESC LIMIT ?",
                    (record["task_id"], max_events_per_task),
                ).fetchall()
                events.reverse()
                first_seq = events[0][0] if events else 1
                stored.append(StoredTask(record, first_seq, [text for _, text in events]))
        return stored

    def events(self, task_id: str) -> list[tuple[int, str]]:
        with self._lock:
            return list(
                self._connection.execute(
                    "SELECT seq, message FROM events WHERE task_id = ? ORDER BY seq", (task_id,)
                )
            )


def _task_row(record: dict[str, Any]) -> tuple[Any, ...]:
    result = record.get("result")
    return (
        record["task_id"],
        record["agent"],
        record["input"],
        record["status"],
        record["origin"],
        record["created_at"],
        record.get("started_at"),
        record.get("finished_at"),
        json.dumps(result) if result is not None else None,
    )


def _task_record(row: tuple[Any, ...]) -> dict[str, Any]:
    keys = (
        "task_id",
        "agent",
        "input",
        "status",
        "origin",
        "created_at",
        "started_at",
        "finished_at",
        "result",
    )
    record = dict(zip(keys, row, strict=True))
    record["result"] = json.loads(record["result"]) if record["result"] else None
    return record
