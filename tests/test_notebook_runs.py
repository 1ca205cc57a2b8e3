"""Runs inside the notebook file (issue 18, part 2): the run log a saved output carries,
packed and cut to its cap, and ``POST agentkit/api/tasks/import`` on a real server:
same id when free, a new one on a clash, ``imported_from``, events equal to the
original's, forks and comparisons of imported tasks, and every malformed log refused
with its code and nothing imported. The whole notebook (nbclient, nbconvert, load(),
the secrets grep) is tests/test_notebook_file.py."""

from __future__ import annotations

import asyncio
import base64
import gzip
import json
from typing import Any

import pytest
from conftest import read_until_result

import agentkit_jupyter.protocol as protocol
from agentkit_jupyter.core import AgentPool, demo_agents
from agentkit_jupyter.kernel.static_html import render_static_html
from agentkit_jupyter.tasks import TaskHub
from agentkit_jupyter.tasks.notebook_runs import RunLogError, pack_run_log, unpack_run_log


async def finished(api: Any, task_id: str, timeout: float = 30) -> dict[str, Any]:
    async with asyncio.timeout(timeout):
        while True:
            status, record = await api("GET", "tasks", task_id, params={"limit": "0"})
            assert status == 200, record
            if protocol.is_final(record["status"]):
                return dict(record)
            await asyncio.sleep(0.05)


async def run(api: Any, agent: str, text: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    status, record = await api("POST", "tasks", body={"agent": agent, "input": text})
    assert status == 201, record
    await finished(api, record["task_id"])
    return await whole(api, record["task_id"])


async def whole(api: Any, task_id: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    status, page = await api("GET", "tasks", task_id)
    assert status == 200 and not page["has_more"], page
    events = page.pop("events")
    return page, events


async def import_(api: Any, *runs: Any, source: str = "analysis.ipynb") -> tuple[int, Any]:
    return await api("POST", "tasks", "import", body={"runs": list(runs), "source": source})


def without_id(message: dict[str, Any]) -> dict[str, Any]:
    """A message with its task id left out (an imported task under a new id)."""
    message = {k: v for k, v in message.items() if k != "task_id"}
    if message["type"] == "result":
        message["data"] = {k: v for k, v in message["data"].items() if k != "task_id"}
    return message


# -- packing ---------------------------------------------------------------------------


def _log(events: int) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = [
        {
            "type": "step",
            "seq": i + 1,
            "task_id": "t1",
            "data": {
                "event_type": "thought",
                "step": i + 1,
                "data": {"text": f"step {i}: " + "lorem ipsum dolor " * (i % 7)},
                "timestamp": 1.0 + i,
            },
        }
        for i in range(events)
    ]
    messages.append(
        {
            "type": "step",
            "seq": events + 1,
            "task_id": "t1",
            "data": {
                "event_type": "final_answer",
                "step": events + 1,
                "data": {"output": "42"},
                "timestamp": 9e9,
            },
        }
    )
    messages.append(
        {
            "type": "result",
            "seq": events + 2,
            "task_id": "t1",
            "data": {"status": "succeeded", "task_id": "t1", "output": "42"},
        }
    )
    return messages


TASK = {
    "task_id": "t1",
    "agent": "demo",
    "input": "q",
    "status": "succeeded",
    "origin": "server",
    "created_at": 1.0,
    "ws_url": "/agentkit/ws/tasks/t1",
    "subscribers": 2,
    "publish_token": "never-saved",
}


def test_a_log_is_packed_whole_and_unpacked_the_same() -> None:
    messages = _log(50)
    packed = pack_run_log(TASK, messages)
    assert packed["cut"] is None and packed["messages"] == 52
    assert set(packed["task"]) <= set(protocol.RUN_LOG_RECORD_FIELDS)
    assert "publish_token" not in json.dumps(packed) and "ws_url" not in packed["task"]
    assert pack_run_log(TASK, messages)["log"] == packed["log"]  # deterministic bytes
    run = unpack_run_log(json.loads(json.dumps(packed)))
    assert run.messages == messages and not run.cut


def test_a_log_beyond_the_cap_keeps_its_start_its_last_step_and_the_result() -> None:
    messages = _log(5000)
    packed = pack_run_log(TASK, messages, max_chars=20_000)
    assert len(packed["log"]) <= 20_000
    cut = packed["cut"]
    assert cut is not None and cut["events"] == 5002 and cut["tail"] == 2
    run = unpack_run_log(packed)
    assert run.cut and len(run.messages) == cut["kept"]
    first = cut["kept"] - cut["tail"]
    assert run.messages[:first] == messages[:first]
    assert run.messages[-2:] == messages[-2:]
    html = render_static_html(TASK, messages, saved_log_cut=cut)
    assert "data-agentkit-log-cut='true'" in html
    assert f"of 5,002 events it keeps its first {first:,} events and its last 2" in html


def test_a_log_whose_end_alone_does_not_fit_is_left_out_of_load() -> None:
    from agentkit_jupyter.kernel.notebook_runs import find_runs

    packed = pack_run_log(TASK, _log(3), max_chars=40)
    assert packed["messages"] == 0 and packed["cut"] == {"events": 5, "kept": 0, "tail": 0}
    html = render_static_html(TASK, _log(3), saved_log_cut=packed["cut"])
    assert "not even its result fits in 2 MiB" in html
    notebook = {"cells": [{"outputs": [{"data": {protocol.RUN_LOG_MIMETYPE: packed}}]}]}
    with pytest.warns(UserWarning, match="their log did not fit"):
        assert find_runs(notebook) == []


def _payload(lines: list[str] | bytes, **task: Any) -> dict[str, Any]:
    raw = lines if isinstance(lines, bytes) else "\n".join(lines).encode()
    packed = pack_run_log(TASK, _log(2))
    packed["log"] = base64.b64encode(gzip.compress(raw)).decode()
    packed["task"] = {**packed["task"], **task}
    return dict(packed)


MALFORMED: list[tuple[str, Any, str]] = [
    ("not an object", [1, 2], "not a JSON object"),
    ("version", {**pack_run_log(TASK, _log(1)), "version": 99}, "version is 99"),
    ("base64", {**pack_run_log(TASK, _log(1)), "log": "%%%"}, "not base64"),
    (
        "gzip",
        {**pack_run_log(TASK, _log(1)), "log": base64.b64encode(b"plain").decode()},
        "not gzip",
    ),
    ("json", _payload(["{not json"]), "message 1 of its log is not JSON"),
    ("no result", _payload([json.dumps(m) for m in _log(2)[:-1]]), "does not end with"),
    (
        "gap",
        _payload([json.dumps(m) for m in _log(3)[:1] + _log(3)[2:]]),
        "seqs are not 1, 2, 3",
    ),
    ("running", _payload([json.dumps(m) for m in _log(2)], status="running"), "not finished"),
    ("no agent", _payload([json.dumps(m) for m in _log(2)], agent=""), "has no agent"),
    (
        "step",
        _payload(['{"type":"step","seq":1,"data":{"step":1}}']),
        "has no event_type",
    ),
]


@pytest.mark.parametrize(("name", "payload", "said"), MALFORMED, ids=[m[0] for m in MALFORMED])
def test_a_malformed_log_says_what_is_wrong(name: str, payload: Any, said: str) -> None:
    with pytest.raises(RunLogError, match=said):
        unpack_run_log(payload)


# -- importing on a real server -----------------------------------------------------------


async def elsewhere() -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A finished demo run of another hub (another server's), its record and log."""
    hub = TaskHub(AgentPool(demo_agents()))
    task = hub.create_task("demo", "Compare Paris and Rome")
    await task.wait()
    return task.to_dict(), [json.loads(e.data) for e in task.log.read_after(0, 10_000)]


async def test_an_imported_run_is_a_finished_task_with_the_same_events(
    api: Any, jp_serverapp: Any
) -> None:
    record, events = await elsewhere()
    packed = pack_run_log(record, events)
    hub = jp_serverapp.web_app.settings["agentkit"].hub
    # This server does not know the id: it is kept.
    status, answer = await import_(api, packed)
    assert status == 201, answer
    assert answer["ids"] == {record["task_id"]: record["task_id"]}
    again, imported = await whole(api, record["task_id"])
    assert imported == events
    assert again["status"] == "succeeded" and again["result"] == record["result"]
    for name in ("agent", "input", "origin", "created_at", "finished_at", "tokens_in", "cost"):
        assert again[name] == record[name], name
    mark = again[protocol.IMPORTED_FROM_KEY]
    assert mark["task_id"] == record["task_id"] and mark["source"] == "analysis.ipynb"
    assert mark["cut"] is False
    status, listing = await api("GET", "tasks")
    [summary] = [t for t in listing["tasks"] if t["task_id"] == record["task_id"]]
    assert summary["imported_from"]["source"] == "analysis.ipynb"
    assert hub.get(record["task_id"]).finished
    # Deleted stays deleted: the id is not given out again in this process.
    status, _ = await api("DELETE", "tasks", record["task_id"])
    assert status == 204
    status, answer = await import_(api, packed)
    assert status == 201 and answer["ids"][record["task_id"]] != record["task_id"], answer


async def test_an_imported_task_streams_like_a_finished_one(api: Any, ws_connect: Any) -> None:
    record, events = await elsewhere()
    status, answer = await import_(api, pack_run_log(record, events))
    assert status == 201, answer
    async with await ws_connect(record["task_id"]) as ws:
        streamed = await read_until_result(ws)
    assert streamed[0]["type"] == "connected" and streamed[0]["status"] == "succeeded"
    assert streamed[1:] == events


async def test_an_id_that_is_taken_gets_a_new_one_and_parents_follow(api: Any) -> None:
    parent, parent_events = await run(api, "demo", "Compare Paris and Rome")
    at = next(
        e["seq"]
        for e in parent_events
        if e["type"] == "step" and e["data"]["event_type"] == "thought"
    )
    status, child = await api("POST", "tasks", parent["task_id"], "fork", body={"at_seq": at})
    assert status == 201, child
    await finished(api, child["task_id"])
    child, child_events = await whole(api, child["task_id"])
    status, answer = await import_(
        api,
        pack_run_log(parent, parent_events),
        pack_run_log(child, child_events),
        source="/home/someone/work/analysis.ipynb",
    )
    assert status == 201, answer
    new_parent, new_child = answer["ids"][parent["task_id"]], answer["ids"][child["task_id"]]
    assert new_parent != parent["task_id"] and new_child != child["task_id"]
    record, events = await whole(api, new_child)
    assert record["parent_id"] == new_parent  # imported along: named by its new id
    assert record["imported_from"]["source"] == "analysis.ipynb"  # no folder
    assert [without_id(m) for m in events] == [without_id(m) for m in child_events]
    assert all(m["task_id"] == new_child for m in events)
    assert events[-1]["data"]["task_id"] == new_child


async def test_fork_and_compare_work_on_an_imported_task(api: Any) -> None:
    record, events = await run(api, "demo", "Compare Paris and Rome")
    status, answer = await import_(api, pack_run_log(record, events))
    assert status == 201, answer
    imported = answer["ids"][record["task_id"]]
    status, comparison = await api("GET", "compare", params={"a": record["task_id"], "b": imported})
    assert status == 200, comparison
    assert all(row["same"] for row in comparison["rows"]), comparison["rows"]
    at = next(
        e["seq"] for e in events if e["type"] == "step" and e["data"]["event_type"] == "observation"
    )
    status, fork = await api(
        "POST", "tasks", imported, "fork", body={"at_seq": at, "edit": {"observation": "1"}}
    )
    assert status == 201, fork
    done = await finished(api, fork["task_id"])
    assert done["status"] == "succeeded" and done["parent_id"] == imported


async def test_a_cut_log_imports_its_part_and_says_so(api: Any) -> None:
    record, events = await run(api, "demo", "Compare Paris and Rome")
    packed = pack_run_log(record, events, max_chars=1500)
    cut = packed["cut"]
    assert cut is not None and cut["kept"] < len(events)
    status, answer = await import_(api, packed)
    assert status == 201, answer
    imported, logged = await whole(api, answer["ids"][record["task_id"]])
    assert imported["imported_from"]["cut"] is True
    assert len(logged) == cut["kept"] and [m["seq"] for m in logged] == list(
        range(1, cut["kept"] + 1)
    )
    assert logged[-1]["type"] == "result" and imported["status"] == "succeeded"


async def test_malformed_imports_are_refused_and_nothing_is_imported(
    api: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    record, events = await run(api, "demo", "Compare Paris and Rome")
    good = pack_run_log(record, events)
    status, before = await api("GET", "tasks")
    bad = {**good, "log": "%%%"}
    status, body = await import_(api, good, bad)
    assert status == 400 and body["error"]["code"] == "invalid_run_log", body
    assert body["error"]["message"].startswith("Run 2 is not a run log: its log is not base64")
    for wrong in (b"{}", b"not json", json.dumps({"runs": []}).encode()):
        status, body = await api("POST", "tasks", "import", body=wrong)
        assert status == 400 and body["error"]["code"] == "invalid_body", body
    monkeypatch.setattr(protocol, "RUN_LOG_MAX_INFLATED_BYTES", 1024 * 1024)
    bomb = {**good, "log": base64.b64encode(gzip.compress(b"\n" * (3 * 1024 * 1024))).decode()}
    status, body = await import_(api, bomb)
    assert status == 413 and body["error"]["code"] == "run_log_too_large", body
    status, after = await api("GET", "tasks")
    assert [t["task_id"] for t in after["tasks"]] == [t["task_id"] for t in before["tasks"]]


@pytest.fixture
def agentkit_config() -> dict[str, Any]:
    return {"api_keys": {"viewer": {"scope": "read", "key": "read-key-0123456789abcdef"}}}


async def test_importing_needs_write(api: Any) -> None:
    status, body = await api(
        "POST",
        "tasks",
        "import",
        body={"runs": [{}]},
        headers={"X-AgentKit-Api-Key": "read-key-0123456789abcdef"},
    )
    assert status == 403 and body["error"]["code"] == "forbidden", body
