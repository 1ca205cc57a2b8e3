"""``agentkit_jupyter.history()`` and ``steps_frame()``: the server's runs and one run's
steps as pandas DataFrames, against a real Jupyter server (blocking calls in a thread,
as in test_task_handle.py); and the error without pandas."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd
import pytest

import agentkit_jupyter as ak
from agentkit_jupyter import protocol
from agentkit_jupyter.kernel.client import AgentKitClient, ServerInfo
from agentkit_jupyter.kernel.history import HISTORY_COLUMNS, STEP_COLUMNS, history, steps_frame


@pytest.fixture
def server(
    jp_serverapp: Any, http_server_client: Any, jp_http_port: int, jp_base_url: str
) -> ServerInfo:
    return ServerInfo(
        f"http://127.0.0.1:{jp_http_port}{jp_base_url}", jp_serverapp.identity_provider.token
    )


@pytest.fixture
def client(server: ServerInfo) -> Iterator[AgentKitClient]:
    with AgentKitClient(server) as made:
        yield made


async def call(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    return await asyncio.to_thread(fn, *args, **kwargs)


async def finished(api: Any, task_id: str) -> dict[str, Any]:
    async with asyncio.timeout(30):
        while True:
            _, record = await api("GET", "tasks", task_id, params={"limit": "0"})
            if protocol.is_final(record["status"]):
                return dict(record)
            await asyncio.sleep(0.05)


async def run(api: Any, agent: str, text: str) -> dict[str, Any]:
    status, record = await api("POST", "tasks", body={"agent": agent, "input": text})
    assert status == 201, record
    return await finished(api, record["task_id"])


async def test_one_row_a_task_with_the_documented_columns(api: Any, client: Any) -> None:
    demo = await run(api, "demo", "Compare Paris and Rome")
    echo = await run(api, "echo", "ping")
    broken = await run(api, "broken", "anything")
    frame = await call(history, client=client)

    assert isinstance(frame, pd.DataFrame)
    assert list(frame.columns) == list(HISTORY_COLUMNS)
    assert list(frame["id"]) == [demo["task_id"], echo["task_id"], broken["task_id"]]
    row = frame.iloc[0]
    assert row["agent"] == "demo" and row["status"] == "succeeded"
    assert row["input"] == "Compare Paris and Rome"
    assert row["output"] == demo["result"]["output"]
    assert row["steps"] == 3
    assert row["tokens_in"] == demo["tokens_in"] > 0
    assert row["tokens_out"] == demo["tokens_out"] > 0
    assert pd.isna(row["cost"])  # the scripted model has no price
    assert row["duration"] == pytest.approx(demo["finished_at"] - demo["started_at"])
    assert row["created"] == pd.Timestamp(demo["created_at"], unit="s", tz="UTC")
    assert pd.isna(row["parent"])
    failed = frame.iloc[2]
    assert failed["status"] == "failed" and pd.isna(failed["output"]) and pd.isna(failed["steps"])
    # Types a notebook can compute with.
    assert str(frame["created"].dtype) == "datetime64[ns, UTC]" or "UTC" in str(
        frame["created"].dtype
    )
    assert frame["tokens_in"].sum() == demo["tokens_in"] + echo["tokens_in"]
    assert frame.groupby("agent")["duration"].mean().loc["echo"] >= 0


async def test_the_filters_are_the_servers(api: Any, client: Any) -> None:
    first = await run(api, "echo", "one")
    await run(api, "broken", "two")
    await asyncio.sleep(0.05)
    between = datetime.now(UTC)
    await asyncio.sleep(0.05)
    third = await run(api, "echo", "three")
    hang = await api("POST", "tasks", body={"agent": "hang-llm", "input": "q"})
    await api("POST", "tasks", hang[1]["task_id"], "cancel")
    await finished(api, hang[1]["task_id"])

    echo = await call(history, agent="echo", client=client)
    assert list(echo["id"]) == [first["task_id"], third["task_id"]]
    failed = await call(history, status="failed", client=client)
    assert list(failed["agent"]) == ["broken"]
    ended = await call(history, status=["failed", "cancelled"], client=client)
    assert list(ended["status"]) == ["failed", "cancelled"]
    later = await call(history, since=between, client=client)
    assert list(later["id"]) == [third["task_id"], hang[1]["task_id"]]
    # A naive datetime is local time, as everywhere in Python.
    naive = between.astimezone().replace(tzinfo=None)
    assert list((await call(history, since=naive, client=client))["id"]) == list(later["id"])
    assert len(await call(history, since=between.timestamp(), client=client)) == 2
    assert len(await call(history, since=between.isoformat(), client=client)) == 2
    assert len(await call(history, since=between.date() - timedelta(days=1), client=client)) == 4
    newest = await call(history, limit=1, client=client)
    assert list(newest["id"]) == [hang[1]["task_id"]]
    assert len(await call(history, agent="nobody", client=client)) == 0
    empty = await call(history, agent="nobody", client=client)
    assert list(empty.columns) == list(HISTORY_COLUMNS)


async def test_a_forks_parent_is_a_column(api: Any, client: Any) -> None:
    parent = await run(api, "demo", "What is 17 * 23?")
    status, fork = await api("POST", "tasks", parent["task_id"], "fork", body={"at_seq": 0})
    assert status == 201, fork
    await finished(api, fork["task_id"])
    frame = await call(history, client=client)
    assert frame.set_index("id").loc[fork["task_id"], "parent"] == parent["task_id"]


async def test_steps_frame_one_row_a_step_event(api: Any, client: Any, server: Any) -> None:
    demo = await run(api, "demo", "What is 17 * 23?")
    messages = (await call(client.get_task, demo["task_id"]))["events"]
    frame = steps_frame(messages)
    assert list(frame.columns) == list(STEP_COLUMNS)
    assert "token" not in set(frame["event_type"])
    kinds = list(frame["event_type"])
    assert kinds == [
        "usage",
        "thought",
        "tool_call",
        "observation",
        "usage",
        "final_answer",
    ]
    by_kind = frame.set_index("event_type")
    assert by_kind.loc["tool_call", "tool"] == "calculator"
    assert by_kind.loc["tool_call", "arguments"] == {"expression": "17 * 23"}
    assert by_kind.loc["observation", "text"] == "391"
    assert (
        by_kind.loc["observation", "is_error"] is False
        or not by_kind.loc["observation", "is_error"]
    )
    assert by_kind.loc["observation", "duration_ms"] >= 0
    assert by_kind.loc["final_answer", "text"] == demo["result"]["output"]
    assert frame["tokens_in"].sum() == demo["tokens_in"]
    assert frame["tokens_out"].sum() == demo["tokens_out"]
    assert not frame["copied"].any()
    assert list(frame["step"]) == [1, 1, 1, 1, 2, 2]
    assert frame["seq"].is_monotonic_increasing
    assert "UTC" in str(frame["timestamp"].dtype)
    # The handle's to_dataframe() is this frame.
    handle = ak.TaskHandle(await call(ak.TaskWidget, demo["task_id"], server=server))
    try:
        via_handle = await call(handle.to_dataframe)
    finally:
        handle.widget.close()
    pd.testing.assert_frame_equal(via_handle, frame)


def test_steps_frame_of_a_fork_and_of_an_old_log() -> None:
    def step(seq: int, kind: str, data: dict[str, Any], copied: bool = False) -> dict[str, Any]:
        event: dict[str, Any] = {"event_type": kind, "step": 1, "data": data, "timestamp": 1.0}
        if copied:
            event["copied"] = True
        return {"type": "step", "seq": seq, "task_id": "t", "data": event}

    old = [
        step(1, "thought", {"text": "hm", "usage": {"prompt_tokens": 5, "completion_tokens": 2}}),
        step(2, "final_answer", {"output": "ok", "usage": {"prompt_tokens": 5}}),
        {"type": "result", "seq": 3, "data": {"status": "succeeded"}},
    ]
    frame = steps_frame(old)
    # No usage steps (a log from before them): the thoughts carry each call's tokens.
    assert list(frame["tokens_in"]) == [5, pd.NA] or frame["tokens_in"].sum() == 5
    assert len(frame) == 2
    fork = [step(1, "thought", {"text": "hm"}, copied=True), step(2, "cancelled", {"reason": "x"})]
    frame = steps_frame(fork)
    assert list(frame["copied"]) == [True, False]
    assert frame.iloc[1]["text"] == "x" and not frame.iloc[1]["is_error"]
    assert len(steps_frame([])) == 0 and list(steps_frame([]).columns) == list(STEP_COLUMNS)


def test_without_pandas_the_error_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "pandas", None)  # import pandas raises ImportError
    for attempt in (lambda: history(client=object()), lambda: steps_frame([])):  # type: ignore[arg-type]
        with pytest.raises(ImportError) as caught:
            attempt()
        assert "pip install pandas" in str(caught.value)
        assert 'pip install "agentkit-jupyter[notebooks]"' in str(caught.value)
    # The package itself, and the name, import without pandas.
    assert ak.history is history
