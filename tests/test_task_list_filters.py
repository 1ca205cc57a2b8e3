"""``GET agentkit/api/tasks?agent=&status=&since=&limit=`` on a real Jupyter server: the
list filtered (a full answer), ``since`` as a cursor or as an ISO 8601 date or time, and
the errors."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from agentkit_jupyter import protocol
from agentkit_jupyter.tasks.listing import ListFilter, is_time, parse_statuses, parse_time


async def finished(api: Any, task_id: str) -> dict[str, Any]:
    async with asyncio.timeout(20):
        while True:
            _, record = await api("GET", "tasks", task_id, params={"limit": "0"})
            if protocol.is_final(record["status"]):
                return dict(record)
            await asyncio.sleep(0.05)


async def start(api: Any, agent: str, text: str = "ping") -> str:
    status, record = await api("POST", "tasks", body={"agent": agent, "input": text})
    assert status == 201, record
    return str(record["task_id"])


async def listed(api: Any, params: Any = None) -> dict[str, Any]:
    status, body = await api("GET", "tasks", params=params)
    assert status == 200, body
    return dict(body)


def ids(body: dict[str, Any]) -> list[str]:
    return [t["task_id"] for t in body["tasks"]]


def iso(moment: float, tz: timezone = UTC) -> str:
    return datetime.fromtimestamp(moment, tz).isoformat()


async def make_tasks(api: Any) -> dict[str, Any]:
    """echo, broken (failed), echo, a cancelled hang-llm, echo: in this order, a pause
    before the last two so that a time can fall between them."""
    made: dict[str, Any] = {}
    made["echo1"] = await start(api, "echo", "one")
    made["broken"] = await start(api, "broken")
    made["echo2"] = await start(api, "echo", "two")
    for name in ("echo1", "broken", "echo2"):
        await finished(api, made[name])
    await asyncio.sleep(0.05)
    made["between"] = datetime.now(UTC).timestamp()
    await asyncio.sleep(0.05)
    made["hang"] = await start(api, "hang-llm")
    status, _ = await api("POST", "tasks", made["hang"], "cancel")
    assert status == 202
    made["echo3"] = await start(api, "echo", "three")
    for name in ("hang", "echo3"):
        await finished(api, made[name])
    return made


async def test_without_filters_the_list_is_as_before(api: Any) -> None:
    tasks = await make_tasks(api)
    body = await listed(api)
    assert body["full"] is True and body["deleted"] == [] and body["cursor"]
    order = [tasks[n] for n in ("echo1", "broken", "echo2", "hang", "echo3")]
    assert ids(body) == order
    again = await listed(api, {"since": body["cursor"]})
    assert again["full"] is False and again["tasks"] == []


async def test_agent(api: Any) -> None:
    tasks = await make_tasks(api)
    body = await listed(api, {"agent": "echo"})
    assert body["full"] is True and body["cursor"]
    assert ids(body) == [tasks["echo1"], tasks["echo2"], tasks["echo3"]]
    assert all(t["agent"] == "echo" for t in body["tasks"])
    assert ids(await listed(api, {"agent": "no-such-agent"})) == []
    either = await listed(api, [("agent", "echo"), ("agent", "broken")])
    assert len(ids(either)) == 4


async def test_status_repeated_or_comma_separated(api: Any) -> None:
    tasks = await make_tasks(api)
    failed = await listed(api, {"status": "failed"})
    assert ids(failed) == [tasks["broken"]] and failed["full"] is True
    comma = await listed(api, {"status": "failed,cancelled"})
    repeated = await listed(api, [("status", "failed"), ("status", "cancelled")])
    assert ids(comma) == ids(repeated) == [tasks["broken"], tasks["hang"]]
    both = await listed(api, {"status": "succeeded", "agent": "echo"})
    assert len(ids(both)) == 3


async def test_since_a_date_or_a_time(api: Any) -> None:
    tasks = await make_tasks(api)
    later = [tasks["hang"], tasks["echo3"]]
    for since in (
        iso(tasks["between"]),
        iso(tasks["between"]).replace("+00:00", "Z"),
        iso(tasks["between"], timezone(timedelta(hours=2))),  # the same moment elsewhere
        iso(tasks["between"]).replace("+00:00", ""),  # no offset: UTC
    ):
        body = await listed(api, {"since": since})
        assert ids(body) == later, since
        assert body["full"] is True and body["cursor"] and body["deleted"] == []
    everything = await listed(api, {"since": "2000-01-01"})
    assert len(ids(everything)) == 5
    tomorrow = (datetime.now(UTC) + timedelta(days=1)).date().isoformat()
    assert ids(await listed(api, {"since": tomorrow})) == []
    combined = await listed(api, {"since": iso(tasks["between"]), "agent": "echo"})
    assert ids(combined) == [tasks["echo3"]]


async def test_limit_is_the_newest_oldest_first(api: Any) -> None:
    tasks = await make_tasks(api)
    body = await listed(api, {"limit": "2"})
    assert ids(body) == [tasks["hang"], tasks["echo3"]] and body["full"] is True
    echo = await listed(api, {"limit": "2", "agent": "echo"})
    assert ids(echo) == [tasks["echo2"], tasks["echo3"]]
    assert ids(await listed(api, {"limit": "0"})) == []
    assert len(ids(await listed(api, {"limit": "100"}))) == 5


async def test_a_filter_answers_in_full_and_the_cursor_goes_on(api: Any) -> None:
    tasks = await make_tasks(api)
    first = await listed(api)
    filtered = await listed(api, {"since": first["cursor"], "agent": "broken"})
    # A filter: the filtered list, whole, whatever the cursor said.
    assert filtered["full"] is True and ids(filtered) == [tasks["broken"]]
    new = await start(api, "echo", "four")
    await finished(api, new)
    changes = await listed(api, {"since": filtered["cursor"]})
    assert changes["full"] is False and ids(changes) == [new]


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"since": "2026-13-01"}, "invalid_since"),
        ({"since": "2026-05-01T25:00"}, "invalid_since"),
        ({"since": "yesterday-ish"}, "invalid_since"),
        ({"since": "not a cursor"}, "invalid_since"),
        ({"since": "not a cursor", "agent": "echo"}, "invalid_since"),
        ({"limit": "-1"}, "invalid_limit"),
        ({"limit": "ten"}, "invalid_limit"),
        ({"status": "done"}, "bad_request"),
        ({"status": "failed,oops"}, "bad_request"),
    ],
)
async def test_invalid_values(api: Any, params: dict[str, str], code: str) -> None:
    status, body = await api("GET", "tasks", params=params)
    assert status == 400, body
    assert body["error"]["code"] == code
    assert body["error"]["message"]
    for value in params.values():
        if "-" in value or " " in value:  # the message never quotes the request
            assert value not in body["error"]["message"]


async def test_the_status_message_lists_the_statuses(api: Any) -> None:
    _, body = await api("GET", "tasks", params={"status": "done"})
    for status in protocol.TaskStatus:
        assert status.value in body["error"]["message"]


# -- the helpers -------------------------------------------------------------------------


def test_parse_time() -> None:
    assert parse_time("1970-01-02") == 86_400
    assert parse_time("1970-01-01T01:00:00Z") == 3600
    assert parse_time("1970-01-01T01:00:00") == 3600
    assert parse_time("1970-01-01T03:00:00+02:00") == 3600
    assert parse_time("1970-01-01T00:00:00.5+00:00") == 0.5
    for bad in ("", "1970-1-1", "31-12-2026", "2026-02-30", "-" * 100):
        with pytest.raises(ValueError):
            parse_time(bad)
    assert is_time("2026-05-01") and not is_time("abcd1234.17")


def test_parse_statuses_and_the_filter() -> None:
    assert parse_statuses([]) == frozenset()
    assert parse_statuses(["failed, cancelled", "failed", ""]) == {"failed", "cancelled"}
    with pytest.raises(ValueError):
        parse_statuses(["nope"])
    summaries = [
        {"task_id": str(i), "agent": "a" if i % 2 else "b", "status": "succeeded", "created_at": i}
        for i in range(6)
    ]
    assert not ListFilter().active and ListFilter().apply(summaries) == summaries
    assert ListFilter(limit=0).active
    chosen = ListFilter(agents=frozenset({"a"}), created_since=2, limit=1)
    assert [s["task_id"] for s in chosen.apply(summaries)] == ["5"]
    assert [s["task_id"] for s in ListFilter(created_since=3.5).apply(summaries)] == ["4", "5"]
