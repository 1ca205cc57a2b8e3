"""docs/protocol.md's client in the original route's style, run against a real server."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

DOC = Path(__file__).resolve().parent.parent / "docs" / "protocol.md"


def _client_source() -> str:
    text = DOC.read_text()
    section = text[text.index("### A client in the original route's style") :]
    match = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert match, "the section has no python block"
    return match.group(1)


async def test_the_documented_client_watches_a_task_to_its_result(
    api: Callable[..., Awaitable[Any]],
    ws_url: Callable[..., str],
    jp_auth_header: dict[str, str],
    capsys: Any,
) -> None:
    namespace: dict[str, Any] = {}
    exec(compile(_client_source(), str(DOC), "exec"), namespace)
    status, task = await api("POST", "tasks", body={"agent": "demo", "input": "What is 17 * 23?"})
    assert status == 201
    result = await namespace["watch"](ws_url(task["task_id"]), jp_auth_header)
    assert result["status"] == "succeeded"
    assert result["task_id"] == task["task_id"]
    assert {"output", "total_steps", "total_tokens"} <= set(result)
    printed = capsys.readouterr().out
    assert "tool_call" in printed and "final_answer" in printed
