"""``Task.finish``: the result is serialised once, then redacted, then read back; the
record holds what the log holds (strict JSON, valid text, no known secret), and a
redaction that would break the JSON keeps the record."""

from __future__ import annotations

import json
from typing import Any

import pytest

import agentkit_jupyter.protocol as protocol
from agentkit_jupyter.tasks import HubLimits, Task, TaskStatus
from agentkit_jupyter.tasks.bounds import WholeTexts

SECRET = "s3cr3t-token-0123456789"


# Every result says what the run used; these runs made no model call.
NOTHING_SPENT = {"usage": {"prompt_tokens": 0, "completion_tokens": 0}, "cost": None}


def _redact(text: str) -> str:
    for secret in (SECRET, "12345678"):
        text = text.replace(secret, "[secret]")
    return text


def _finished(monkeypatch: pytest.MonkeyPatch, **result: Any) -> tuple[Task, int]:
    task = Task("t1", "agent", "q", HubLimits(), redact=_redact)
    task.status = TaskStatus.RUNNING
    calls = 0
    dumps = protocol.dumps

    def counting(message: Any) -> str:
        nonlocal calls
        calls += 1
        return dumps(message)

    monkeypatch.setattr(protocol, "dumps", counting)
    assert task.finish(TaskStatus.SUCCEEDED, **result)
    monkeypatch.setattr(protocol, "dumps", dumps)
    return task, calls


def _logged(task: Task) -> dict[str, Any]:
    [entry] = task.log.read_after(0)
    message: dict[str, Any] = json.loads(entry.data)
    return message


def test_the_result_is_serialised_once_and_the_record_is_the_logs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    task, calls = _finished(
        monkeypatch, output=f"found {SECRET} in report-\udcff.txt", total_tokens=float("nan")
    )
    assert calls == 1
    assert task.result == {
        "status": "succeeded",
        "task_id": "t1",
        "output": "found [secret] in report-\ufffd.txt",
        "total_tokens": "NaN",
        **NOTHING_SPENT,
    }
    assert _logged(task)["data"] == task.result
    assert task.to_dict()["result"] == task.result


def test_a_redaction_that_breaks_the_json_keeps_the_record(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # "12345678" is a "secret" here, and also a number in the result: replacing it
    # there would leave `"total_tokens":[secret]`, which is not JSON.
    task, calls = _finished(monkeypatch, output="ok", total_tokens=12345678)
    assert calls == 1
    assert task.result == {
        "status": "succeeded",
        "task_id": "t1",
        "output": "ok",
        "total_tokens": 12345678,
        **NOTHING_SPENT,
    }
    assert task.finished and task.log.last_seq == 1


async def test_a_huge_result_is_cut_in_the_log_and_the_record_and_kept_whole() -> None:
    task = Task("t1", "agent", "q", HubLimits(max_event_bytes=4096), wholes=WholeTexts(1 << 24))
    task.status = TaskStatus.RUNNING
    task.finish(TaskStatus.SUCCEEDED, output="o" * 1_000_000, total_steps=1)
    logged = _logged(task)
    assert len(json.dumps(logged)) <= 4096 and logged["data"] == task.result
    assert task.result is not None
    marker = task.result[protocol.TRUNCATED_KEY]
    assert marker["fields"]["output"]["chars"] == 1_000_000
    assert task.result["output"] == "o" * marker["fields"]["output"]["shown"]
    assert marker["href"] == "agentkit/api/tasks/t1/events/1"
    whole = json.loads(await task.read_event(1))
    assert whole["data"]["output"] == "o" * 1_000_000
