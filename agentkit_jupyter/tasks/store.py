"""Task history on disk: an embedded SQLite database behind the hub.

Writes are gathered in a pending list that one writer thread takes as a whole
and commits in one transaction: the event loop never waits on disk, a fast
stream is written in large batches, and because batches commit in order, what
is on disk is always a gap-free prefix of each task's log. A crash loses at most
the batch in flight (well under a second of events). Consecutive events of a
task are gathered into one run as they come (a list append on the event loop),
so the writer does no per-event Python work to compete for the GIL with it.

A batch that fails (disk full, a read-only or vanished file) is kept, in order,
and retried with a growing delay; ``status()`` says so meanwhile, one log line
marks each burst of failures and one its end, and when the disk takes writes
again everything that waited is written in its order. Reads (a finished task's
events, page by page) use their own connection, off the event loop.

The file is the user's history (prompts, tool outputs): it is created 0600 in a
0700 folder, and an existing one that others may read is warned about.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import stat
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import agentkit_jupyter.protocol as protocol

log = logging.getLogger(__name__)

SCHEMA_VERSION = 4

# The record fields of runs as data (lineage, usage, budget), kept in task_details.
DETAIL_FIELDS = (
    "parent_id",
    "forked_at_seq",
    "fork_kind",
    "resumed_by",
    "budget",
    "tokens_in",
    "tokens_out",
    "cost",
    # A run imported from a notebook (protocol.ImportedFrom).
    "imported_from",
)

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
    2: [
        # The whole copy of each message the log holds cut (see tasks/bounds.py).
        """CREATE TABLE whole_events (
            task_id TEXT NOT NULL,
            seq INTEGER NOT NULL,
            message TEXT NOT NULL,
            PRIMARY KEY (task_id, seq)
        )""",
        # Tasks whose stored events stop before their end: from_seq and later never
        # reached the file (the write queue was full while the disk refused writes).
        """CREATE TABLE history_gaps (
            task_id TEXT PRIMARY KEY,
            from_seq INTEGER NOT NULL,
            noted_at REAL NOT NULL
        )""",
    ],
    3: [
        # The tool calls a live task waits on a decision for (its pending_approvals):
        # a task restored after a crash says in its record what it waited for.
        """CREATE TABLE task_waits (
            task_id TEXT PRIMARY KEY,
            pending TEXT NOT NULL
        )""",
    ],
    4: [
        # Runs as data: a fork's parent, an interrupted task's continuation, tokens in
        # and out, cost and budget (DETAIL_FIELDS, as one JSON object).
        """CREATE TABLE task_details (
            task_id TEXT PRIMARY KEY,
            details TEXT NOT NULL
        )""",
    ],
}

# How long the writer lets a batch gather.
GATHER_SECONDS = 0.05
# After a failed write: the first delay before the retry, doubled up to the last.
RETRY_FIRST_SECONDS = 0.1
RETRY_MAX_SECONDS = 5.0
# Errors of one operation, not of the disk: retrying cannot help, so that one is
# skipped (and logged) instead of holding up everything after it.
_BAD_OPERATION = (
    sqlite3.IntegrityError,
    sqlite3.ProgrammingError,
    sqlite3.InterfaceError,
    sqlite3.DataError,
    ValueError,
    TypeError,
    OverflowError,
)

# What may wait for the disk, by default (about: the characters of the queued texts,
# plus PENDING_OP_BYTES each). Beyond it an event is not queued, and neither is anything
# after it of the same task: its history on disk stops there, a gap-free prefix, and
# the gap is recorded (history_gaps) once the disk takes writes again.
MAX_PENDING_BYTES = 128 * 1024 * 1024
PENDING_OP_BYTES = 100

# The full integrity check at start-up reads the whole file: only up to this size.
QUICK_CHECK_MAX_BYTES = 32 * 1024 * 1024

FILE_MODE = 0o600
FOLDER_MODE = 0o700


class StoreError(RuntimeError):
    pass


@dataclass(slots=True)
class StoredTask:
    """A task record read back at start-up (its events stay on disk)."""

    record: dict[str, Any]
    # The oldest and newest stored ``seq`` (None, 0 when it has no events).
    first_seq: int | None
    last_seq: int
    # What could not be read as written (None: nothing).
    damaged: str | None = None
    # The first seq that never reached the file (None: the stored events are all of it).
    history_gap: int | None = None


@dataclass(slots=True)
class LoadReport:
    tasks: list[StoredTask] = field(default_factory=list)
    # Records that could not be turned into a task at all (logged, left on disk).
    skipped: int = 0


class _EventRun:
    """Consecutive events of one task, gathered for one INSERT."""

    __slots__ = ("first_seq", "task_id", "texts")

    def __init__(self, task_id: str, first_seq: int, text: str) -> None:
        self.task_id = task_id
        self.first_seq = first_seq
        self.texts = [text]


# ("task", record) | ("events", _EventRun) | ("delete", task_id) | ("barrier", Event)
# | ("whole", (task_id, seq, text)) | ("gap", (task_id, from_seq, time))
_Op = tuple[str, Any]


def _clean(text: Any) -> Any:
    """Valid text for a TEXT column (a lone surrogate cannot be stored as UTF-8)."""
    if isinstance(text, str) and not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            return protocol.valid_text(text)
    return text


class TaskStore:
    """SQLite persistence of tasks and their events (``":memory:"`` for tests)."""

    def __init__(self, path: str | Path, max_pending_bytes: int = MAX_PENDING_BYTES) -> None:
        self.path = str(path)
        self.max_pending_bytes = max_pending_bytes
        self.moved_aside: Path | None = None
        # Said once at start-up (and in status()): e.g. a history others may read.
        self.warnings: list[str] = []
        self._lock = threading.Lock()  # the writer's connection
        self._connection = self._open()
        self._reader, self._read_lock = self._open_reader()
        self._pending: list[_Op] = []
        self._pending_lock = threading.Lock()
        self._wakeup = threading.Event()  # set when _pending may have something
        self._stop = threading.Event()  # ends a retry delay at close()
        self._stopping = False
        # Operations queued so far and committed so far (see ticket / durable()).
        self._queued = 0
        self._committed = 0
        # The same in bytes (see MAX_PENDING_BYTES): what waits is the difference.
        self._queued_bytes = 0
        self._committed_bytes = 0
        # Tasks whose events are no longer queued (the queue was full): the first seq left
        # out. Their history on disk is the prefix before it.
        self._gaps: dict[str, int] = {}
        self._dropped = 0  # events left out so far
        self._waiting = 0  # operations of a failing batch, waiting for a retry
        # The write failure in progress: {"message", "since", "failures"}; None when fine.
        self._error: dict[str, Any] | None = None
        # Tasks deleted in this process: nothing queued for them later is written.
        self._deleted: set[str] = set()
        self._writer = threading.Thread(target=self._write_loop, name="agentkit-store", daemon=True)
        self._writer.start()

    # -- opening, permissions, corruption and migrations -------------------------------

    def _open(self) -> sqlite3.Connection:
        if self.path == ":memory:":
            return self._connect()
        self._prepare_file()
        try:
            return self._connect()
        except sqlite3.OperationalError as exc:
            # Locked, read-only, unreadable folder...: not corruption; leave the file alone.
            raise StoreError(f"the task database {self.path} cannot be opened: {exc}") from exc
        except sqlite3.DatabaseError as exc:
            self.moved_aside = self._move_aside(exc)
            self._prepare_file()
            return self._connect()

    def _prepare_file(self) -> None:
        """Create the folder 0700 and the file 0600 (SQLite gives -wal and -shm the
        file's mode); warn about an existing folder or file others may read."""
        target = Path(self.path)
        folder = target.parent
        if not folder.exists():
            folder.mkdir(mode=FOLDER_MODE, parents=True, exist_ok=True)
            os.chmod(folder, FOLDER_MODE)  # mkdir's mode is filtered by the umask
        else:
            mode = folder.stat().st_mode
            if mode & stat.S_IROTH and not mode & stat.S_ISVTX:
                self._warn(
                    f"the folder of the task history, {folder}, can be listed by other "
                    f"users (mode {stat.S_IMODE(mode):04o}); consider chmod 700 {folder}"
                )
        if not target.exists():
            fd = os.open(target, os.O_CREAT | os.O_RDWR, FILE_MODE)
            os.close(fd)
            os.chmod(target, FILE_MODE)
        for suffix in ("", "-wal", "-shm"):
            path = Path(self.path + suffix)
            try:
                mode = path.stat().st_mode
            except FileNotFoundError:
                continue
            if mode & (stat.S_IRGRP | stat.S_IROTH):
                self._warn(
                    f"the task history {path} can be read by other users (mode "
                    f"{stat.S_IMODE(mode):04o}): it holds prompts and tool outputs; "
                    f"consider chmod 600 {path}"
                )

    def _warn(self, message: str) -> None:
        self.warnings.append(message)
        log.warning("agentkit: %s", message)

    def _connect(self) -> sqlite3.Connection:
        connection = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        try:
            # A file that is not a database fails here; the full check reads every
            # page, so it runs only while that is quick (damage found later is
            # reported where it is read, and start-up stays fast on a big history).
            connection.execute("SELECT count(*) FROM sqlite_master").fetchone()
            if self._size() <= QUICK_CHECK_MAX_BYTES:
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

    def _size(self) -> int:
        if self.path == ":memory:":
            return 0
        try:
            return os.path.getsize(self.path)
        except OSError:
            return 0

    def _open_reader(self) -> tuple[sqlite3.Connection, threading.Lock]:
        """A second connection for reads, so a page read never waits for a commit
        (an in-memory database has only the one)."""
        if self.path == ":memory:":
            return self._connection, self._lock
        reader = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        reader.execute("PRAGMA query_only = 1")
        return reader, threading.Lock()

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

    def save_task(self, record: dict[str, Any]) -> int:
        """Queue the task's record; returns its ticket (see :meth:`durable`)."""
        if record["task_id"] in self._deleted:
            return 0
        size = PENDING_OP_BYTES + len(str(record.get("input", ""))) + 1024
        return self._put(("task", record), size)

    def append_event(self, task_id: str, seq: int, message: str) -> bool:
        """Queue an event; False when it is not queued because the queue is full (or
        was, for an earlier event of the task): the task's history stops before it."""
        if task_id in self._deleted:
            return True
        size = len(message) + PENDING_OP_BYTES
        with self._pending_lock:
            if task_id in self._gaps or not self._room_for(size):
                self._leave_out(task_id, seq)
                return False
            self._queued += 1
            self._queued_bytes += size
            if self._pending:
                kind, last = self._pending[-1]
                if (
                    kind == "events"
                    and last.task_id == task_id
                    and last.first_seq + len(last.texts) == seq
                ):
                    last.texts.append(message)  # the writer is already awake for it
                    return True
            self._pending.append(("events", _EventRun(task_id, seq, message)))
        self._wakeup.set()
        return True

    def save_whole_event(self, task_id: str, seq: int, message: str) -> bool:
        """Queue the whole copy of message ``seq`` (the log holds it cut); False when it
        is not queued (the queue is full, or the task's history already stops)."""
        if task_id in self._deleted:
            return True
        size = len(message) + PENDING_OP_BYTES
        with self._pending_lock:
            if task_id in self._gaps or not self._room_for(size):
                return False
            self._queued += 1
            self._queued_bytes += size
            self._pending.append(("whole", (task_id, seq, message)))
        self._wakeup.set()
        return True

    def _room_for(self, size: int) -> bool:
        return self._queued_bytes - self._committed_bytes + size <= self.max_pending_bytes

    def _leave_out(self, task_id: str, seq: int) -> None:
        """(Holding the pending lock.) Event ``seq`` of the task is not queued: nor is
        anything after it, and the gap is queued to be recorded (past the cap: it is one
        small row a task)."""
        self._dropped += 1
        if task_id in self._gaps:
            return
        self._gaps[task_id] = seq
        self._queued += 1
        self._pending.append(("gap", (task_id, seq, time.time())))
        self._wakeup.set()
        log.error(
            "agentkit: the task history's write queue is full (%.0f MiB wait for %s); "
            "task %s is kept in memory only from event %d on, and its history on disk "
            "stops before it",
            (self._queued_bytes - self._committed_bytes) / 2**20,
            self.path,
            task_id,
            seq,
        )

    def delete_task(self, task_id: str) -> None:
        """Delete the task on disk; anything queued for it from now on is dropped."""
        self._deleted.add(task_id)
        self._put(("delete", task_id))

    def was_deleted(self, task_id: str) -> bool:
        """Whether ``task_id`` was deleted in this process (nothing for it is written)."""
        return task_id in self._deleted

    @property
    def failing(self) -> bool:
        return self._error is not None

    def durable(self, ticket: int) -> bool:
        """Whether everything queued up to ``ticket`` (from :meth:`save_task`) is on disk."""
        return self._committed >= ticket

    def flush(self, timeout: float = 10.0) -> None:
        """Wait until everything queued so far is on disk."""
        done = threading.Event()
        self._put(("barrier", done))
        if not done.wait(timeout):
            raise StoreError("the task database did not catch up in time")

    def status(self) -> dict[str, Any]:
        """Whether writes succeed: ``error`` (None when fine) and what waits for the disk."""
        error = self._error
        return {
            "state": (protocol.HistoryState.FAILING if error else protocol.HistoryState.OK).value,
            "path": self.path,
            "error": dict(error) if error else None,
            "pending": max(self._queued - self._committed, 0),
            "pending_bytes": max(self._queued_bytes - self._committed_bytes, 0),
            "max_pending_bytes": self.max_pending_bytes,
            "dropped_events": self._dropped,
            "warnings": list(self.warnings),
        }

    def close(self) -> None:
        if self._writer.is_alive():
            with self._pending_lock:
                self._stopping = True
            self._stop.set()
            self._wakeup.set()
            self._writer.join(30)
        with self._lock:
            self._connection.close()
        if self._reader is not self._connection:
            with self._read_lock:
                self._reader.close()

    def _put(self, op: _Op, size: int = PENDING_OP_BYTES) -> int:
        """Queue ``op`` whatever the queue holds (records, deletions, barriers)."""
        with self._pending_lock:
            self._queued += 1
            self._queued_bytes += size
            ticket = self._queued
            self._pending.append(op)
        self._wakeup.set()
        return ticket

    def _write_loop(self) -> None:
        waiting: list[_Op] = []  # a failed batch and what came after it, in order
        delay = 0.0
        while True:
            if waiting:
                self._stop.wait(delay)  # retry after the delay (close() ends it)
            else:
                self._wakeup.wait()
                if not self._stopping:
                    time.sleep(GATHER_SECONDS)  # let a batch gather
            with self._pending_lock:
                # Anything added after this takes the new list and sets the event again.
                batch, self._pending = self._pending, []
                self._wakeup.clear()
                stopping = self._stopping
                upto = self._queued
                upto_bytes = self._queued_bytes
            waiting.extend(batch)
            del batch  # not kept alive (the texts of a whole batch) until the next one
            if waiting:
                if self._commit(waiting):
                    self._committed = upto  # before the barriers: flush() then sees it
                    self._committed_bytes = upto_bytes
                    for kind, value in waiting:
                        if kind == "barrier":
                            value.set()
                    waiting = []
                    delay = 0.0
                else:
                    self._waiting = len(waiting)
                    delay = min(max(2 * delay, RETRY_FIRST_SECONDS), RETRY_MAX_SECONDS)
            if stopping:
                if waiting:
                    log.error(
                        "agentkit: %d queued write(s) of the task history %s were lost at "
                        "shutdown: the disk still refused them (%s)",
                        len(waiting),
                        self.path,
                        (self._error or {}).get("message"),
                    )
                    for kind, value in waiting:
                        if kind == "barrier":
                            value.set()
                return

    def _commit(self, batch: list[_Op]) -> bool:
        """Write ``batch`` in one transaction; False (and nothing written) on a disk error."""
        try:
            try:
                with self._lock:
                    self._apply(batch)
            except _BAD_OPERATION:
                # Replaying the batch from its start after a disk error in here is
                # harmless: each operation sets a state, so the end state is the same.
                self._apply_one_by_one(batch)
        except sqlite3.Error as exc:
            self._failed(exc)
            return False
        self._recovered()
        return True

    def _apply_one_by_one(self, batch: list[_Op]) -> None:
        """A batch holding an operation SQLite refuses as such: write the others."""
        for op in batch:
            try:
                with self._lock:
                    self._apply([op])
            except _BAD_OPERATION:
                log.exception("agentkit: a write to the task history was refused; skipped")

    def _failed(self, exc: sqlite3.Error) -> None:
        now = time.time()
        if self._error is None:
            self._error = {"message": str(exc), "since": now, "failures": 1}
            # One line per burst of failures (and one when it ends), not one per retry.
            log.error(
                "agentkit: writing the task history %s failed (%s); the stream goes on "
                "from memory, and the writes are kept and retried until the disk takes "
                "them",
                self.path,
                exc,
            )
        else:
            self._error = {
                **self._error,
                "message": str(exc),
                "failures": self._error["failures"] + 1,
            }
            log.debug("agentkit: the task history %s still refuses writes: %s", self.path, exc)

    def _recovered(self) -> None:
        error = self._error
        if error is None:
            return
        self._error = None
        log.warning(
            "agentkit: the task history %s takes writes again after %d failed attempt(s) "
            "over %.1f s; the %d waiting write(s) were written in order",
            self.path,
            error["failures"],
            time.time() - error["since"],
            self._waiting,
        )
        self._waiting = 0

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
                    pending = value.get("pending_approvals")
                    if pending and not protocol.is_final(value.get("status")):
                        db.execute(
                            "INSERT OR REPLACE INTO task_waits VALUES (?, ?)",
                            (value["task_id"], protocol.dumps(pending)),
                        )
                    else:
                        db.execute("DELETE FROM task_waits WHERE task_id = ?", (value["task_id"],))
                    details = {k: value[k] for k in DETAIL_FIELDS if value.get(k) is not None}
                    if details:
                        db.execute(
                            "INSERT OR REPLACE INTO task_details VALUES (?, ?)",
                            (value["task_id"], protocol.dumps(details)),
                        )
                elif kind == "whole":
                    db.execute("INSERT OR REPLACE INTO whole_events VALUES (?, ?, ?)", value)
                elif kind == "gap":
                    db.execute(
                        "INSERT INTO history_gaps VALUES (?, ?, ?) ON CONFLICT (task_id) "
                        "DO UPDATE SET from_seq = min(from_seq, excluded.from_seq)",
                        value,
                    )
                elif kind == "delete":
                    db.execute("DELETE FROM events WHERE task_id = ?", (value,))
                    db.execute("DELETE FROM whole_events WHERE task_id = ?", (value,))
                    db.execute("DELETE FROM history_gaps WHERE task_id = ?", (value,))
                    db.execute("DELETE FROM task_waits WHERE task_id = ?", (value,))
                    db.execute("DELETE FROM task_details WHERE task_id = ?", (value,))
                    db.execute("DELETE FROM tasks WHERE task_id = ?", (value,))
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
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

    # -- reads ----------------------------------------------------------------------------

    def load(self) -> LoadReport:
        """Every stored task record, oldest first, with the range of its stored events.

        Never fails on a bad record: what cannot be decoded is repaired (and the task
        marked damaged) or, if nothing usable is left, skipped and logged.
        """
        report = LoadReport()
        with self._read_lock:
            rows = self._reader.execute(
                "SELECT CAST(task_id AS BLOB), CAST(agent AS BLOB), CAST(input AS BLOB), "
                "CAST(status AS BLOB), CAST(origin AS BLOB), created_at, started_at, "
                "finished_at, CAST(result AS BLOB), "
                "(SELECT MIN(seq) FROM events e WHERE e.task_id = t.task_id), "
                "(SELECT MAX(seq) FROM events e WHERE e.task_id = t.task_id), "
                "(SELECT from_seq FROM history_gaps g WHERE g.task_id = t.task_id), "
                "(SELECT CAST(pending AS BLOB) FROM task_waits w WHERE w.task_id = t.task_id), "
                "(SELECT CAST(details AS BLOB) FROM task_details d WHERE d.task_id = t.task_id) "
                "FROM tasks t ORDER BY created_at"
            ).fetchall()
        for row in rows:
            try:
                report.tasks.append(_stored_task(row))
            except Exception:
                report.skipped += 1
                log.exception("agentkit: a task record of %s could not be read; skipped", self.path)
        return report

    def read_events(
        self, task_id: str, after: int, upto: int, limit: int, max_bytes: int
    ) -> tuple[list[tuple[int, bytes]], bool]:
        """Stored events of ``task_id`` with ``after < seq <= upto``, oldest first: at
        most ``limit``, and ``max_bytes`` (or one), as the UTF-8 bytes they were
        written as. Also says whether a row had to be repaired (invalid UTF-8, not JSON).
        """
        with self._read_lock:
            rows = self._reader.execute(
                "SELECT seq, CAST(message AS BLOB), json_valid(message) FROM events "
                "WHERE task_id = ? AND seq > ? AND seq <= ? ORDER BY seq LIMIT ?",
                (task_id, after, upto, limit),
            ).fetchall()
        page: list[tuple[int, bytes]] = []
        total = 0
        damaged = False
        for seq, data, valid in rows:
            if not valid:
                data = _unreadable_event(task_id, seq)
                damaged = True
            else:
                try:
                    data.decode("utf-8")
                except UnicodeDecodeError:
                    data = data.decode("utf-8", "replace").encode("utf-8")
                    damaged = True
            total += len(data)
            if total > max_bytes and page:
                break
            page.append((seq, data))
        if damaged:
            log.warning("agentkit: task %s has damaged events in %s (repaired)", task_id, self.path)
        return page, damaged

    def read_whole_event(self, task_id: str, seq: int) -> bytes | None:
        """The whole copy of message ``seq`` (the log holds it cut), as its UTF-8 bytes;
        None when there is none."""
        with self._read_lock:
            row = self._reader.execute(
                "SELECT CAST(message AS BLOB) FROM whole_events WHERE task_id = ? AND seq = ?",
                (task_id, seq),
            ).fetchone()
        if row is None:
            return None
        data = bytes(row[0])
        try:
            data.decode("utf-8")
        except UnicodeDecodeError:
            data = data.decode("utf-8", "replace").encode("utf-8")
        return data

    def events(self, task_id: str) -> list[tuple[int, str]]:
        with self._read_lock:
            return list(
                self._reader.execute(
                    "SELECT seq, message FROM events WHERE task_id = ? ORDER BY seq", (task_id,)
                )
            )


def _unreadable_event(task_id: str, seq: int) -> bytes:
    """What replaces a stored event that is not JSON: a visible error step, same ``seq``."""
    event: protocol.StepEventData = {
        "event_type": "error",
        "step": 0,
        "data": {
            "code": protocol.ErrorCode.DAMAGED_RECORD.value,
            "message": "This event could not be read back from the task history.",
        },
        "timestamp": 0.0,
    }
    return protocol.dumps(protocol.step_message(task_id, seq, event)).encode("utf-8")


def _task_row(record: dict[str, Any]) -> tuple[Any, ...]:
    result = record.get("result")
    return (
        _clean(record["task_id"]),
        _clean(record["agent"]),
        _clean(record["input"]),
        _clean(record["status"]),
        _clean(record["origin"]),
        record["created_at"],
        record.get("started_at"),
        record.get("finished_at"),
        protocol.dumps(result) if result is not None else None,
    )


_TEXT_FIELDS = ("task_id", "agent", "input", "status", "origin")


def _stored_task(row: tuple[Any, ...]) -> StoredTask:
    """A task row read as bytes: decoded, and repaired where it cannot be."""
    problems: list[str] = []
    record: dict[str, Any] = {}
    for name, raw in zip(_TEXT_FIELDS, row[:5], strict=True):
        if raw is None:
            raw = b""
        if isinstance(raw, str):  # a REAL/INTEGER cast to BLOB comes back as its text
            raw = raw.encode()
        try:
            record[name] = bytes(raw).decode("utf-8")
        except UnicodeDecodeError:
            record[name] = bytes(raw).decode("utf-8", "replace")
            problems.append(f"{name} is not valid UTF-8")
    if not record["task_id"]:
        raise ValueError("a task record without an id")
    for name, value in zip(("created_at", "started_at", "finished_at"), row[5:8], strict=True):
        if value is None or isinstance(value, int | float):
            record[name] = value
        else:
            record[name] = None
            problems.append(f"{name} is not a number")
    if record["created_at"] is None:
        record["created_at"] = 0.0
    raw_result = row[8]
    record["result"] = None
    if raw_result is not None:
        try:
            result = json.loads(bytes(raw_result).decode("utf-8"))
            if not isinstance(result, dict):
                raise ValueError("not an object")
            record["result"] = json.loads(protocol.dumps(result))  # valid text, strict JSON
        except (ValueError, UnicodeDecodeError, RecursionError):
            problems.append("its result is not readable JSON")
    if record["status"] not in {s.value for s in protocol.TaskStatus}:
        problems.append(f"unknown status {record['status']!r}")
        record["status"] = protocol.TaskStatus.INTERRUPTED.value
    if protocol.is_final(record["status"]) and record["result"] is None:
        record["result"] = {
            "status": record["status"],
            "task_id": record["task_id"],
            "error": {
                "code": protocol.ErrorCode.DAMAGED_RECORD.value,
                "message": "This task's result could not be read back from the task history.",
            },
        }
    first, last = row[9], row[10]
    gap = row[11] if len(row) > 11 and isinstance(row[11], int) else None
    if len(row) > 12 and row[12] is not None:
        try:
            pending = json.loads(bytes(row[12]).decode("utf-8"))
            if isinstance(pending, list):
                record["pending_approvals"] = [p for p in pending if isinstance(p, dict)]
        except (ValueError, UnicodeDecodeError, RecursionError):
            problems.append("its pending approvals are not readable JSON")
    if len(row) > 13 and row[13] is not None:
        try:
            details = json.loads(bytes(row[13]).decode("utf-8"))
            if not isinstance(details, dict):
                raise ValueError("not an object")
            record.update({k: details[k] for k in DETAIL_FIELDS if k in details})
        except (ValueError, UnicodeDecodeError, RecursionError):
            problems.append("its details (parent, usage, budget) are not readable JSON")
    return StoredTask(
        record,
        first if isinstance(first, int) else None,
        last if isinstance(last, int) else 0,
        "; ".join(problems) or None,
        gap,
    )
