"""The task list as ``GET tasks`` answers it: bounded summaries, changes by cursor.

A summary is a task's record with its long texts cut (``protocol.LIST_TEXT_MAX_CHARS``),
so one answer is bounded by the number of tasks, whatever their inputs and outputs.
:class:`TaskListJournal` gives each summary a revision when it first differs from the
one last seen, and remembers deletions, so ``GET tasks?since=<cursor>`` answers only the
tasks created or changed since, and the ids deleted since. It is computed when asked
(one pass over the summaries), so the hub needs no hook for it. :class:`ListFilter`
keeps the tasks of ``?agent=``, ``?status=``, ``?since=<date or time>`` and the newest
``?limit=``.
"""

from __future__ import annotations

import secrets
import weakref
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, TypeVar

from .. import protocol

_CUT = protocol.LIST_TEXT_MAX_CHARS


def _cut(text: Any) -> tuple[Any, bool]:
    if isinstance(text, str) and len(text) > _CUT:
        return text[:_CUT], True
    return text, False


def _whole_length(result: dict[str, Any], field: str, length: int) -> int:
    """A result text's whole length: the record may hold it cut (``protocol.Truncation``)."""
    marker = result.get(protocol.TRUNCATED_KEY)
    fields = marker.get("fields") if isinstance(marker, dict) else None
    cut = fields.get(field) if isinstance(fields, dict) else None
    chars = cut.get("chars") if isinstance(cut, dict) else None
    return chars if isinstance(chars, int) else length


def task_summary(record: dict[str, Any]) -> dict[str, Any]:
    """``protocol.TaskSummary`` of a task record (``Task.to_dict()`` plus ``ws_url``)."""
    text = record.get("input")
    text = text if isinstance(text, str) else ""
    summary = dict(record)
    summary["input"], truncated = _cut(text)
    summary["input_chars"] = len(text)
    summary["output_chars"] = 0
    result = record.get("result")
    if isinstance(result, dict):
        result = dict(result)
        output = result.get("output")
        if isinstance(output, str):
            summary["output_chars"] = _whole_length(result, "output", len(output))
        for key in ("output", "reason"):
            if key in result:
                result[key], cut = _cut(result[key])
                truncated = truncated or cut
        error = result.get("error")
        if isinstance(error, dict):
            error = dict(error)
            error["message"], cut = _cut(error.get("message"))
            truncated = truncated or cut
            result["error"] = error
        summary["result"] = result
    summary["truncated"] = truncated
    # Which calls wait, not their arguments: the record (GET tasks/{id}) has those.
    summary["pending_approvals"] = [
        {"call_id": p.get("call_id"), "tool": p.get("tool")}
        for p in record.get("pending_approvals") or []
        if isinstance(p, dict)
    ]
    return summary


def parse_cursor(cursor: str) -> tuple[str, int]:
    """A cursor's epoch and revision; ``ValueError`` if it is not of the server's form
    (``"<epoch>.<revision>"``)."""
    epoch, dot, number = cursor.partition(".")
    if not dot or not number.isascii() or not number.isdigit() or len(number) > 18:
        raise ValueError(cursor)
    return epoch, int(number)


class TaskListJournal:
    """Revisions of the task list, for ``GET tasks?since=``.

    A cursor is ``"<epoch>.<revision>"``: the epoch is new with every journal (every
    server start), so a cursor from before a restart gets the full list, never a wrong
    difference.
    """

    def __init__(self, max_deletions: int = protocol.LIST_DELETIONS_KEPT) -> None:
        self.epoch = secrets.token_hex(4)
        self.revision = 0
        self._max_deletions = max_deletions
        # task id -> (revision of its last change, its summary as JSON text)
        self._seen: dict[str, tuple[int, str]] = {}
        # task id -> revision of its deletion, oldest first
        self._deleted: OrderedDict[str, int] = OrderedDict()
        # Deletions at or before this revision were forgotten: older cursors get it all.
        self._horizon = 0

    def _parse(self, cursor: str | None) -> int | None:
        """The revision a cursor stands for; None: answer the full list."""
        if cursor is None:
            return None
        epoch, revision = parse_cursor(cursor)
        if epoch != self.epoch or revision > self.revision or revision < self._horizon:
            return None
        return revision

    def _update(self, summaries: list[dict[str, Any]]) -> None:
        present: set[str] = set()
        for summary in summaries:
            task_id = summary["task_id"]
            present.add(task_id)
            text = protocol.dumps(summary)
            seen = self._seen.get(task_id)
            if seen is None or seen[1] != text:
                self.revision += 1
                self._seen[task_id] = (self.revision, text)
        for task_id in [t for t in self._seen if t not in present]:
            del self._seen[task_id]
            self.revision += 1
            self._deleted[task_id] = self.revision
        while len(self._deleted) > self._max_deletions:
            _, self._horizon = self._deleted.popitem(last=False)

    def answer(self, summaries: list[dict[str, Any]], cursor: str | None) -> protocol.TaskList:
        """The answer to ``GET tasks[?since=cursor]`` given every task's summary (oldest
        first). ``ValueError`` for a cursor that is not of the server's form."""
        self._update(summaries)
        since = self._parse(cursor)
        if since is None:
            tasks, deleted = summaries, []
        else:
            tasks = [s for s in summaries if self._seen[s["task_id"]][0] > since]
            deleted = [t for t, revision in self._deleted.items() if revision > since]
        return {
            "tasks": tasks,  # type: ignore[typeddict-item]
            "deleted": deleted,
            "cursor": f"{self.epoch}.{self.revision}",
            "full": since is None,
        }


_JOURNALS: weakref.WeakKeyDictionary[object, TaskListJournal] = weakref.WeakKeyDictionary()


def journal_for(hub: object) -> TaskListJournal:
    """The journal of one hub (made on first use, gone with the hub)."""
    journal = _JOURNALS.get(hub)
    if journal is None:
        journal = _JOURNALS[hub] = TaskListJournal()
    return journal


# -- filters: ?agent=&status=&since=<time>&limit= ---------------------------------------


_Summary = TypeVar("_Summary", bound=Mapping[str, object])


@dataclass(frozen=True, slots=True)
class ListFilter:
    """What ``GET tasks`` keeps of the list: tasks of these agents (any, when empty), in
    these statuses (any, when empty), created at or after ``created_since`` (epoch
    seconds), and of those the newest ``limit``."""

    agents: frozenset[str] = frozenset()
    statuses: frozenset[str] = frozenset()
    created_since: float | None = None
    limit: int | None = None

    @property
    def active(self) -> bool:
        return bool(self.agents or self.statuses) or (
            self.created_since is not None or self.limit is not None
        )

    def apply(self, summaries: list[_Summary]) -> list[_Summary]:
        """The summaries kept (oldest first, as given)."""
        kept = [
            s
            for s in summaries
            if (not self.agents or s.get("agent") in self.agents)
            and (not self.statuses or s.get("status") in self.statuses)
            and (self.created_since is None or _created(s) >= self.created_since)
        ]
        if self.limit is not None:
            kept = kept[len(kept) - self.limit :] if self.limit else []
        return kept


def _created(summary: Mapping[str, object]) -> float:
    created = summary.get("created_at")
    return float(created) if isinstance(created, int | float) else float("-inf")


def is_time(since: str) -> bool:
    """Whether ``?since=`` is a date or time (it has a ``-``; a cursor never does)."""
    return "-" in since


def parse_time(text: str) -> float:
    """An ISO 8601 date (``2026-05-01``) or date-time (``2026-05-01T12:30``,
    ``…T12:30:00Z``, ``…T12:30:00+02:00``) as epoch seconds; one without an offset is
    UTC. ``ValueError`` if it is neither (the message never quotes it)."""
    text = text.strip()
    if len(text) > 64:
        raise ValueError("too long for a date")
    try:
        if len(text) == 10:
            day = date.fromisoformat(text)
            moment = datetime(day.year, day.month, day.day, tzinfo=UTC)
        else:
            moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError("not an ISO 8601 date or date-time") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


STATUSES = tuple(status.value for status in protocol.TaskStatus)


def parse_statuses(values: list[str]) -> frozenset[str]:
    """``?status=`` values (repeated, or comma-separated) as a set of statuses;
    ``ValueError`` naming the first that is not one."""
    found: set[str] = set()
    for value in values:
        for name in value.split(","):
            name = name.strip()
            if not name:
                continue
            if name not in STATUSES:
                raise ValueError(f"'status' takes: {', '.join(STATUSES)}.")
            found.add(name)
    return frozenset(found)
