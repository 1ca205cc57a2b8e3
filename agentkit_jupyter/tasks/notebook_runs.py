"""Runs inside the notebook file: a finished run's log packed for a saved output, and
unpacked and imported into the hub (``POST tasks/import``, ``agentkit_jupyter.load()``).

The kernel's widget packs (``pack_run_log``): the record's ``RUN_LOG_RECORD_FIELDS``
and the log's messages, one JSON text a line, gzip (mtime 0: the same run saves the
same bytes, so a notebook under Git does not change for nothing) and base64, within
``RUN_LOG_MAX_CHARS``; a longer log keeps its first events, its last step and the
result. The server unpacks (``unpack_run_log``) with every check an untrusted file
needs (inflated size, shapes, order) and imports (``import_runs``): all runs or none.
"""

from __future__ import annotations

import base64
import binascii
import bisect
import gzip
import json
import re
import time
import zlib
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any, cast

import agentkit_jupyter.protocol as protocol

from ..protocol import TRUNCATED_KEY, TaskStatus
from .hub import Task, TaskHub

__all__ = [
    "ImportedRun",
    "RunLogError",
    "RunLogTooLargeError",
    "import_runs",
    "pack_run_log",
    "unpack_run_log",
]

# A run log's own task id is kept when it is free and looks like one of ours.
_TASK_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
_TERMINAL = frozenset(t.value for t in protocol.TERMINAL_EVENT_TYPES)


class RunLogError(ValueError):
    """A run log that is not one (``invalid_run_log``)."""


class RunLogTooLargeError(RunLogError):
    """A run log that inflates beyond RUN_LOG_MAX_INFLATED_BYTES (``run_log_too_large``)."""


# -- packing (the kernel's side) -------------------------------------------------------------


def _encode(lines: list[str]) -> str:
    raw = "\n".join(lines).encode("utf-8", "replace")
    return base64.b64encode(gzip.compress(raw, compresslevel=9, mtime=0)).decode("ascii")


def _tail_start(messages: list[dict[str, Any]]) -> int:
    """Where the log's end starts: its last terminal step, else its result."""
    for index in range(len(messages) - 1, -1, -1):
        message = messages[index]
        if message.get("type") == "step":
            if (message.get("data") or {}).get("event_type") in _TERMINAL:
                return index
            return len(messages) - 1 if messages[-1].get("type") == "result" else len(messages)
    return 0


def pack_run_log(
    task: dict[str, Any],
    messages: list[dict[str, Any]],
    max_chars: int = protocol.RUN_LOG_MAX_CHARS,
) -> protocol.RunLog:
    """The ``RunLog`` of a finished run: its record and log, cut to ``max_chars``."""
    record = {k: task.get(k) for k in protocol.RUN_LOG_RECORD_FIELDS if k in task}
    lines = [protocol.dumps(m) for m in messages]
    total = sum(len(line) for line in lines) + max(len(lines) - 1, 0)
    packed = _encode(lines)
    cut: protocol.RunLogCut | None = None
    kept = lines
    if len(packed) > max_chars:
        start = _tail_start(messages)
        body, tail = lines[:start], lines[start:]
        sizes = [0]
        for line in body:
            sizes.append(sizes[-1] + len(line) + 1)
        tail_chars = sum(len(line) + 1 for line in tail)
        # Guess from the whole log's compression ratio, then shrink until it fits: a
        # few compressions, not one per event.
        ratio = len(packed) / max(total, 1)
        count = len(body)
        while True:
            room = max_chars / ratio * 0.95 - tail_chars
            count = max(0, min(count - 1, bisect.bisect_right(sizes, room) - 1))
            kept = body[:count] + tail
            packed = _encode(kept)
            if len(packed) <= max_chars or count == 0:
                break
            ratio = len(packed) / max(sizes[count] + tail_chars, 1) * 1.05
        if len(packed) > max_chars and tail:
            kept = tail[-1:]  # the result alone (at most max_event_bytes)
            packed = _encode(kept)
        if len(packed) > max_chars:
            # Not even the result fits (max_event_bytes 0 and a huge answer): no log,
            # and load() skips the run (the static copy says so).
            kept, packed = [], _encode([])
        cut = {"events": len(lines), "kept": len(kept), "tail": min(len(tail), len(kept))}
    return {
        "version": protocol.RUN_LOG_VERSION,
        "encoding": protocol.RUN_LOG_ENCODING,
        "task": record,
        "messages": len(kept),
        "bytes": sum(len(line) for line in kept) + max(len(kept) - 1, 0),
        "log": packed,
        "cut": cut,
    }


# -- unpacking (the server's side) -----------------------------------------------------------


@dataclass(slots=True)
class ImportedRun:
    """A run log read and checked: the record, and its messages oldest first."""

    record: dict[str, Any]
    messages: list[dict[str, Any]]
    cut: bool


def _inflate(text: str, limit: int) -> bytes:
    try:
        compressed = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raise RunLogError("its log is not base64") from None
    inflater = zlib.decompressobj(wbits=31)  # gzip framing
    try:
        raw = inflater.decompress(compressed, limit + 1)
    except zlib.error:
        raise RunLogError("its log is not gzip data") from None
    if len(raw) > limit:
        raise RunLogTooLargeError(f"its log inflates beyond {limit:,} bytes")
    if not inflater.eof:
        raise RunLogError("its log is cut short (not a whole gzip stream)")
    return raw


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _check_message(message: Any, index: int) -> dict[str, Any]:
    where = f"message {index + 1}"
    if not isinstance(message, dict):
        raise RunLogError(f"{where} is not a JSON object")
    kind = message.get("type")
    seq = message.get("seq")
    if kind not in ("step", "result"):
        raise RunLogError(f"{where} is neither a step nor the result")
    if not isinstance(seq, int) or isinstance(seq, bool) or seq < 1:
        raise RunLogError(f"{where} has no seq >= 1")
    data = message.get("data")
    if not isinstance(data, dict):
        raise RunLogError(f"{where} has no data object")
    if kind == "step":
        if not isinstance(data.get("event_type"), str) or not data["event_type"]:
            raise RunLogError(f"{where} (a step) has no event_type")
        step = data.get("step")
        if not isinstance(step, int) or isinstance(step, bool):
            raise RunLogError(f"{where} (a step) has no step number")
        if not isinstance(data.get("data"), dict):
            raise RunLogError(f"{where} (a step) has no event data")
        if not _number(data.get("timestamp")):
            raise RunLogError(f"{where} (a step) has no timestamp")
    elif not protocol.is_final(data.get("status")):
        raise RunLogError(f"{where} (the result) has no final status")
    return message


def _check_record(task: Any) -> dict[str, Any]:
    if not isinstance(task, dict):
        raise RunLogError("its task is not a JSON object")
    record = {k: task.get(k) for k in protocol.RUN_LOG_RECORD_FIELDS}
    for name in ("task_id", "agent", "status"):
        if not isinstance(record[name], str) or not record[name]:
            raise RunLogError(f"its task has no {name}")
    if not isinstance(record["input"], str):
        raise RunLogError("its task has no input")
    if not protocol.is_final(record["status"]):
        raise RunLogError(f"its task is {record['status']}, not finished: only a finished run")
    if not isinstance(record["origin"], str) or not record["origin"]:
        record["origin"] = "server"
    for name in ("created_at", "started_at", "finished_at", "cost"):
        if record[name] is not None and not _number(record[name]):
            raise RunLogError(f"its task's {name} is not a number")
    for name in ("tokens_in", "tokens_out"):
        value = record[name]
        if value is None:
            record[name] = 0
        elif not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise RunLogError(f"its task's {name} is not a count")
    for name in ("parent_id", "fork_kind", "resumed_by"):
        if record[name] is not None and not isinstance(record[name], str):
            raise RunLogError(f"its task's {name} is not text")
    at = record["forked_at_seq"]
    if at is not None and (not isinstance(at, int) or isinstance(at, bool) or at < 0):
        raise RunLogError("its task's forked_at_seq is not a seq")
    for name in ("result", "budget"):
        if record[name] is not None and not isinstance(record[name], dict):
            raise RunLogError(f"its task's {name} is not a JSON object")
    return record


def unpack_run_log(payload: Any, max_inflated: int | None = None) -> ImportedRun:
    """A ``RunLog`` (untrusted: read from a file) checked and unpacked, or
    ``RunLogError`` saying what is wrong with it. ``max_inflated``: by default
    RUN_LOG_MAX_INFLATED_BYTES."""
    if max_inflated is None:
        max_inflated = protocol.RUN_LOG_MAX_INFLATED_BYTES
    if not isinstance(payload, dict):
        raise RunLogError("it is not a JSON object")
    if payload.get("version") != protocol.RUN_LOG_VERSION:
        raise RunLogError(
            f"its version is {payload.get('version')!r}; this server reads version "
            f"{protocol.RUN_LOG_VERSION}"
        )
    if payload.get("encoding") != protocol.RUN_LOG_ENCODING:
        raise RunLogError(f"its encoding is not {protocol.RUN_LOG_ENCODING!r}")
    if not isinstance(payload.get("log"), str):
        raise RunLogError("it has no log text")
    record = _check_record(payload.get("task"))
    cut = payload.get("cut") is not None
    raw = _inflate(payload["log"], max_inflated)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise RunLogError("its log is not UTF-8") from None
    messages: list[dict[str, Any]] = []
    for index, line in enumerate(text.split("\n") if text else []):
        try:
            message = json.loads(line)
        except (ValueError, RecursionError):
            raise RunLogError(f"message {index + 1} of its log is not JSON") from None
        messages.append(_check_message(message, index))
    if not messages or messages[-1]["type"] != "result":
        raise RunLogError("its log does not end with the task's result")
    if any(m["type"] == "result" for m in messages[:-1]):
        raise RunLogError("its log has a result before its end")
    seqs = [m["seq"] for m in messages]
    if cut:
        if any(b <= a for a, b in zip(seqs, seqs[1:], strict=False)):
            raise RunLogError("the seqs of its log do not increase")
    elif seqs != list(range(1, len(seqs) + 1)):
        raise RunLogError("its log is not whole: the seqs are not 1, 2, 3, ... (and no cut)")
    if messages[-1]["data"].get("status") != record["status"]:
        raise RunLogError("its result's status is not its task's")
    return ImportedRun(record, messages, cut)


# -- importing -------------------------------------------------------------------------------


def _retarget(message: dict[str, Any], task_id: str, seq: int) -> dict[str, Any]:
    """The message as the imported task's own: its id, its seq, and the ``href`` of a
    cut message's marker pointing at it."""
    message = {**message, "seq": seq, "task_id": task_id}
    data = dict(message["data"])
    if message["type"] == "result":
        data["task_id"] = task_id
        holder = data
    else:
        holder = data["data"] = dict(data["data"])
    marker = holder.get(TRUNCATED_KEY)
    if isinstance(marker, dict) and "href" in marker:
        holder[TRUNCATED_KEY] = {**marker, "href": protocol.event_href(task_id, seq)}
    message["data"] = data
    return message


def _free_id(hub: TaskHub, wanted: str, taken: set[str]) -> str:
    if _TASK_ID.fullmatch(wanted) and wanted not in taken and hub.id_is_free(wanted):
        return wanted
    while True:
        fresh = hub.fresh_task_id()
        if fresh not in taken and hub.id_is_free(fresh):
            return fresh


def import_runs(
    hub: TaskHub,
    runs: list[ImportedRun],
    source: str | None,
    taken_elsewhere: Collection[str] = (),
    prepare: Callable[[Task], None] | None = None,
) -> list[Task]:
    """Each run as a finished task of the hub (its record, its events under its own id
    when free, a new one otherwise), ``imported_from`` saying where it comes from. A
    parent or continuation imported along is named by its new id. ``taken_elsewhere``:
    ids held outside the hub (a shared backend's); ``prepare`` sees each task before
    its events are logged (to give it a sink)."""
    ids: dict[str, str] = {}
    taken: set[str] = set(taken_elsewhere)
    for run in runs:
        old = str(run.record["task_id"])
        ids[old] = _free_id(hub, old, taken)
        taken.add(ids[old])
    now = time.time()
    tasks: list[Task] = []
    for run in runs:
        record = run.record
        task_id = ids[str(record["task_id"])]
        task = hub.imported_task(task_id, record["agent"], record["input"], record["origin"])
        task.created_at = float(record["created_at"] or now)
        task.started_at = record["started_at"]
        task.finished_at = record["finished_at"]
        for link in ("parent_id", "resumed_by"):
            value = record[link]
            setattr(task, link, ids.get(value, value) if isinstance(value, str) else None)
        task.forked_at_seq = record["forked_at_seq"]
        task.fork_kind = record["fork_kind"]
        task.budget = record["budget"]
        task.tokens_in, task.tokens_out = record["tokens_in"], record["tokens_out"]
        task.cost = float(record["cost"]) if record["cost"] is not None else None
        task.imported_from = cast(
            dict[str, Any],
            protocol.ImportedFrom(
                task_id=str(record["task_id"]), source=source, imported_at=now, cut=run.cut
            ),
        )
        messages = [_retarget(m, task_id, n) for n, m in enumerate(run.messages, 1)]
        if prepare is not None:
            prepare(task)
        hub.finish_imported(task, messages, TaskStatus(record["status"]))
        tasks.append(task)
    return tasks
