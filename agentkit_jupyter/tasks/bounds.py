"""One message of a task's log is bounded: a huge tool output or answer is logged cut.

A step or result larger than ``max_event_bytes`` (``protocol.MAX_EVENT_BYTES`` by
default) would, alone, push every earlier event out of the log's memory window, and
cost every subscriber its whole size. It is logged, streamed and paged as a copy whose
longest texts are cut to fit, with a ``protocol.Truncation`` marker under
``protocol.TRUNCATED_KEY`` saying which texts were cut, how long they are, and where
the whole message is (``GET`` ``protocol.EVENT_PATH``). The hub keeps the whole message:
in the task history, or (no history, or a history that could not take it) in memory,
in :class:`WholeTexts`, within a budget.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from typing import Any

from .. import protocol

# Texts at most this long are never cut (ids, names, statuses).
MIN_CUT_CHARS = 64
# Bytes set aside for the marker: its frame, and per cut text.
MARKER_BYTES = 160
MARKER_BYTES_PER_FIELD = 48
# How many times the cut is narrowed when the text's start is wider than its average.
CUT_ATTEMPTS = 6


def utf8_size(text: str) -> int:
    """The size of ``text`` in UTF-8 (a lone surrogate counted as the '?' it becomes)."""
    if text.isascii():
        return len(text)
    return len(text.encode("utf-8", "replace"))


def container_of(message: Any) -> dict[str, Any] | None:
    """Where a log message's texts (and its marker) are: a step's event data, or the
    result; None for anything else."""
    if not isinstance(message, dict):
        return None
    data = message.get("data")
    if message.get("type") == "step" and isinstance(data, dict):
        data = data.get("data")
    return data if isinstance(data, dict) else None


def truncation_of(message: Any) -> dict[str, Any] | None:
    """The marker of a cut message, or None when it is whole."""
    container = container_of(message)
    marker = container.get(protocol.TRUNCATED_KEY) if container is not None else None
    return marker if isinstance(marker, dict) and "href" in marker else None


def carried(marker: dict[str, Any], paths: dict[str, str]) -> dict[str, Any]:
    """What a result takes of its terminal step's marker (the step was logged cut, and
    the result holds its texts as the step does): the fields it holds too, under their
    paths in the result, and the step's ``href``, where the whole texts are."""
    fields = marker.get("fields")
    kept = {
        paths[name]: cut
        for name, cut in (fields.items() if isinstance(fields, dict) else ())
        if name in paths
    }
    return {protocol.TRUNCATED_KEY: {**marker, "fields": kept}} if kept else {}


def _texts(root: dict[str, Any]) -> list[tuple[str, Any, Any, str]]:
    """Every text longer than MIN_CUT_CHARS under ``root``: (path, holder, key, text)."""
    found: list[tuple[str, Any, Any, str]] = []
    stack: list[tuple[str, Any]] = [("", root)]
    while stack:
        path, value = stack.pop()
        items: Any = value.items() if isinstance(value, dict) else enumerate(value)
        for key, item in items:
            if value is root and key == protocol.TRUNCATED_KEY:
                continue
            where = f"{path}.{key}" if path else str(key)
            if isinstance(item, str):
                if len(item) > MIN_CUT_CHARS:
                    found.append((where, value, key, item))
            elif isinstance(item, dict | list):
                stack.append((where, item))
    return found


def _cut_texts(
    texts: list[tuple[str, Any, Any, str]], budget: int
) -> dict[str, protocol.TruncatedText]:
    """Cut the texts (in place) so that they take about ``budget`` bytes together: the
    longest are cut to one common length, the shorter ones stay whole."""
    # Bytes per character of JSON, measured on what may be kept: the first ``budget``.
    samples = [text[: max(budget, 1)] for _, _, _, text in texts]
    widths = [(utf8_size(protocol.dumps(sample)) - 2) / len(sample) for sample in samples]

    def cost(limit: int) -> float:
        return sum(min(len(t[3]), limit) * w for t, w in zip(texts, widths, strict=True))

    low, high = 0, max(len(t[3]) for t in texts)
    while low < high:  # the longest common length that fits
        middle = (low + high + 1) // 2
        if cost(middle) <= budget:
            low = middle
        else:
            high = middle - 1
    fields: dict[str, protocol.TruncatedText] = {}
    for path, holder, key, text in texts:
        if len(text) > low:
            holder[key] = text[:low]
            fields[path] = {"chars": len(text), "shown": low}
    return fields


def _container(message: dict[str, Any]) -> dict[str, Any]:
    """The message's container (made an empty object where it is not one)."""
    container = container_of(message)
    if container is None:
        container = {}
        event = message.get("data")
        if message.get("type") == "step" and isinstance(event, dict):
            event["data"] = container
        else:
            message["data"] = container
    return container


def _cut_to(
    message: dict[str, Any], container: dict[str, Any], max_bytes: int, marker: Any
) -> str | None:
    """Cut the container's texts until the message fits; its text, or None (and the
    texts whole again) when cutting them cannot make it fit."""
    originals = _texts(container)
    if not originals:
        return None
    for _, holder, key, _ in originals:
        holder[key] = ""
    reserve = (
        MARKER_BYTES
        + len(marker["href"])
        + sum(MARKER_BYTES_PER_FIELD + len(path) for path, _, _, _ in originals)
    )
    budget = max_bytes - utf8_size(protocol.dumps(message)) - reserve
    for _ in range(CUT_ATTEMPTS):
        if budget < 0:
            break
        for _, holder, key, text in originals:
            holder[key] = text
        marker["fields"] = _cut_texts(originals, budget)
        container[protocol.TRUNCATED_KEY] = marker
        out = protocol.dumps(message)
        size = utf8_size(out)
        if size <= max_bytes:
            return out
        budget -= size - max_bytes + 1024  # the texts' starts are wider than their average
    for _, holder, key, text in originals:
        holder[key] = text
    container.pop(protocol.TRUNCATED_KEY, None)
    return None


def cut_message(message: dict[str, Any], max_bytes: int, href: str, whole_bytes: int) -> str:
    """The text of ``message`` (a step or result, as parsed from its JSON) with its
    longest texts cut so that it fits ``max_bytes``, and the marker. ``message`` is
    changed in place.

    A value that is not text and is too large by itself (a list of a million numbers)
    is shown as the start of its JSON text; an object too large even so (thousands of
    keys) as the marker alone.
    """
    container = _container(message)
    container.pop(protocol.TRUNCATED_KEY, None)
    marker: dict[str, Any] = {"fields": {}, "bytes": whole_bytes, "href": href}
    text = _cut_to(message, container, max_bytes, marker)
    if text is None:
        for key, value in list(container.items()):
            if isinstance(value, dict | list):
                container[key] = json.dumps(value, ensure_ascii=False, default=str)
        text = _cut_to(message, container, max_bytes, marker)
    if text is None:
        container.clear()
        marker["fields"] = {"": {"chars": whole_bytes, "shown": 0}}
        container[protocol.TRUNCATED_KEY] = marker
        text = protocol.dumps(message)
    return text


def bounded(text: str, max_bytes: int, task_id: str, seq: int) -> str | None:
    """``text`` (message ``seq`` of a task's log, as JSON) cut to ``max_bytes``, or None
    when it fits as it is."""
    if max_bytes <= 0 or len(text) <= max_bytes // 4:
        return None  # (a character is at most 4 bytes of UTF-8)
    size = utf8_size(text)
    if size <= max_bytes:
        return None
    try:
        message = json.loads(text)
    except (ValueError, RecursionError):
        message = None
    if not isinstance(message, dict):
        # Not JSON (a redaction that broke it): a readable step that says so.
        event: protocol.StepEventData = {
            "event_type": "error",
            "step": 0,
            "data": {
                "code": protocol.ErrorCode.DAMAGED_RECORD.value,
                "message": "This message could not be read; it began: " + text[:200],
            },
            "timestamp": 0.0,
        }
        message = dict(protocol.step_message(task_id, seq, event))
    return cut_message(message, max_bytes, protocol.event_href(task_id, seq), size)


class WholeTexts:
    """Whole copies of cut messages, in memory, the least recently kept going first
    beyond ``max_bytes``: where there is no task history (or it could not take one)."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._texts: OrderedDict[tuple[str, int], str] = OrderedDict()
        self._held = 0

    @property
    def held_bytes(self) -> int:
        return self._held

    def keep(self, task_id: str, seq: int, text: str) -> bool:
        """Keep ``text``; False when it alone is larger than the budget (not kept)."""
        size = len(text)
        if size > self.max_bytes:
            return False
        old = self._texts.pop((task_id, seq), None)
        if old is not None:
            self._held -= len(old)
        self._texts[(task_id, seq)] = text
        self._held += size
        while self._held > self.max_bytes:
            _, dropped = self._texts.popitem(last=False)
            self._held -= len(dropped)
        return True

    def get(self, task_id: str, seq: int) -> str | None:
        return self._texts.get((task_id, seq))

    def forget(self, task_id: str) -> None:
        for key in [key for key in self._texts if key[0] == task_id]:
            self._held -= len(self._texts.pop(key))
