"""``labextension/src/protocol.generated.ts`` is what ``scripts/generate_protocol_ts.py`` makes
of ``agentkit_jupyter/protocol.py``, and it carries every status and code."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[1]
GENERATOR_PATH = ROOT / "scripts" / "generate_protocol_ts.py"
GENERATED_PATH = ROOT / "labextension" / "src" / "protocol.generated.ts"


def _load(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def generator() -> ModuleType:
    return _load("_generate_protocol_ts", GENERATOR_PATH)


@pytest.fixture(scope="module")
def protocol(generator: ModuleType) -> ModuleType:
    # protocol.py loaded from its file (as the generator does), not through the package.
    module: ModuleType = generator.load_protocol()
    return module


@pytest.fixture(scope="module")
def committed() -> str:
    return GENERATED_PATH.read_text(encoding="utf-8")


def _const_object(text: str, name: str) -> dict[str, str]:
    """The members of ``export const NAME = { ... } as const`` in ``text``."""
    match = re.search(rf"export const {name} = \{{\n(.*?)\n\}} as const;", text, re.S)
    assert match, f"no const object {name}"
    members = re.findall(r"^  ([A-Z0-9_]+): ('[^']*'|\d+),?$", match.group(1), re.M)
    return {key: value.strip("'") for key, value in members}


def _const_array(text: str, name: str) -> list[str]:
    match = re.search(rf"export const {name} = \[(.*?)\] as const;", text, re.S)
    assert match, f"no const array {name}"
    return re.findall(r"'([^']*)'", match.group(1))


def test_the_committed_file_is_the_generators_output(generator: ModuleType, committed: str) -> None:
    expected = generator.generate()
    problem = generator.check(expected, GENERATED_PATH)
    assert problem is None, (
        "protocol.generated.ts is out of date; run `python scripts/generate_protocol_ts.py`\n"
        f"{problem}"
    )
    assert committed == expected


def test_the_output_is_deterministic(generator: ModuleType) -> None:
    assert generator.generate() == generator.generate()


def test_check_reports_a_difference(generator: ModuleType, tmp_path: Path) -> None:
    expected = generator.generate()
    stale = tmp_path / "protocol.generated.ts"
    stale.write_text(expected.replace("'interrupted'", "'lost'"), encoding="utf-8")
    problem = generator.check(expected, stale)
    assert problem is not None and "-  INTERRUPTED: 'lost'" in problem
    assert generator.check(expected, tmp_path / "missing.ts") is not None


def test_every_status_and_code_is_in_the_generated_file(
    protocol: ModuleType, committed: str
) -> None:
    assert committed.startswith(
        "// Generated from agentkit_jupyter/protocol.py by scripts/generate_protocol_ts.py; "
        "do not edit"
    )
    statuses = {s.name: s.value for s in protocol.TaskStatus}
    assert "INTERRUPTED" in statuses
    assert _const_object(committed, "TaskStatus") == statuses
    assert _const_array(committed, "TASK_STATUSES") == list(statuses.values())
    assert set(_const_array(committed, "FINAL_STATUSES")) == {
        s.value for s in protocol.FINAL_STATUSES
    }
    assert "interrupted" in _const_array(committed, "FINAL_STATUSES")

    error_codes = {c.name: c.value for c in protocol.ErrorCode}
    assert _const_object(committed, "ErrorCode") == error_codes
    close_codes = {c.name: str(c.value) for c in protocol.CloseCode}
    assert _const_object(committed, "CloseCode") == close_codes

    assert _const_array(committed, "SERVER_MESSAGE_TYPES") == list(protocol.SERVER_MESSAGE_TYPES)
    assert _const_array(committed, "CLIENT_MESSAGE_TYPES") == list(protocol.CLIENT_MESSAGE_TYPES)


def test_names_and_version_are_in_the_generated_file(protocol: ModuleType, committed: str) -> None:
    for name in (
        "API_PREFIX",
        "TASK_WS_PREFIX",
        "PUBLISH_WS_PREFIX",
        "PUBLISH_TOKEN_HEADER",
        "API_KEY_HEADER",
        "API_KEY_AUTH_SCHEME",
        "API_KEY_QUERY",
        "ENV_SERVER_URL",
        "ENV_SERVER_TOKEN",
        "ENV_API_KEY",
        "TASK_MIMETYPE",
    ):
        assert f"export const {name} = '{getattr(protocol, name)}';" in committed, name
    assert f"export const RECORD_ONLY_LIMIT = {protocol.RECORD_ONLY_LIMIT};" in committed
    assert f"export const PROTOCOL_VERSION = {protocol.PROTOCOL_VERSION};" in committed


def test_interfaces_follow_the_typeddicts(committed: str) -> None:
    for name in (
        "StepEventData",
        "StepMessage",
        "ResultData",
        "ResultMessage",
        "ConnectedMessage",
        "ErrorData",
        "ErrorMessage",
        "PongMessage",
        "PublishEventMessage",
        "PublishCancelMessage",
        "RelayRequest",
        "RelayCancel",
        "RelayBatch",
        "RelayError",
    ):
        assert f"export interface I{name} {{" in committed, name
    # NotRequired -> `?`, `X | None` -> `X | null`, Literal -> a string literal,
    # dict[str, Any] -> an index signature, a nested TypedDict -> its interface.
    result = re.search(r"export interface IResultData \{\n(.*?)\n\}", committed, re.S)
    assert result
    assert result.group(1).splitlines() == [
        "  status: string;",
        "  task_id: string;",
        "  output?: string | null;",
        "  total_steps?: number | null;",
        "  total_tokens?: number | null;",
        "  error?: { [key: string]: unknown } | null;",
        "  reason?: string | null;",
        "  /** `interrupted` while calls waited for a decision: their approval_requested data. */",
        "  pending_approvals?: { [key: string]: unknown }[];",
        "  /** `cancelled` by the budget: `budget_exceeded` (the reason is then the same). */",
        "  code?: string;",
        "  /**",
        "   * Tokens in and out over the whole run (also the partial usage of a cut run), and its "
        "cost in US",
        "   * dollars (None: a model whose price is unknown).",
        "   */",
        "  usage?: { [key: string]: number };",
        "  cost?: number | null;",
    ]
    assert "  type: 'step';\n  seq: number;\n  task_id: string;\n  data: IStepEventData;" in (
        committed
    )
    assert "  messages: { [key: string]: unknown }[];" in committed
    assert "  last_seq?: number;" in committed


def test_ts_type_maps_annotations(generator: ModuleType) -> None:
    from typing import Any, Literal

    def ts(tp: Any) -> str:
        result: str = generator.ts_type(tp, {})
        return result

    assert ts(str) == "string"
    assert ts(int) == "number" and ts(float) == "number"
    assert ts(Literal["a", "b"]) == "'a' | 'b'"
    assert ts(int | None) == "number | null"
    assert ts(dict[str, Any]) == "{ [key: string]: unknown }"
    assert ts(list[str]) == "string[]"
    assert ts(list[str | int]) == "(string | number)[]"
    assert ts(list[Any]) == "unknown[]"
    with pytest.raises(TypeError):
        ts(bytes)
    assert ts(list[dict[str, Any] | None]) == "({ [key: string]: unknown } | null)[]"
    assert ts(list[dict[str, int | None]]) == "{ [key: string]: number | null }[]"
