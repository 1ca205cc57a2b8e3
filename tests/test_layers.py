"""The tree shows the architecture: layer rules, no import circle, one home for the contract."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from agentkit_jupyter.server.frames import check_tornado_internals

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "agentkit_jupyter"
PKG = "agentkit_jupyter"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {
        _module_name(p): p
        for p in PACKAGE.rglob("*.py")
        if "labextension" not in p.parts and "static" not in p.parts
    }


MODULES = _modules()


def _imports(name: str, path: Path, *, with_type_checking: bool = True) -> set[str]:
    """Every module ``name`` imports (absolute names), relative imports resolved."""
    tree = ast.parse(path.read_text())
    is_package = path.name == "__init__.py"
    found: set[str] = set()

    def visit(nodes: list[ast.stmt]) -> None:
        for node in nodes:
            if isinstance(node, ast.If) and not with_type_checking:
                test = node.test
                if isinstance(test, ast.Name) and test.id == "TYPE_CHECKING":
                    visit(node.orelse)
                    continue
            if isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = name.split(".")
                    base = base if is_package else base[:-1]
                    base = base[: len(base) - node.level + 1]
                    module = ".".join(base + ([node.module] if node.module else []))
                else:
                    module = node.module or ""
                found.add(module)
                # ``from pkg import submodule`` imports the submodule.
                for alias in node.names:
                    if f"{module}.{alias.name}" in MODULES:
                        found.add(f"{module}.{alias.name}")
            for child in ast.iter_child_nodes(node):
                if isinstance(child, ast.stmt):
                    visit([child])

    visit(tree.body)
    return found


def _graph(with_type_checking: bool = True) -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for name, path in MODULES.items():
        targets = _imports(name, path, with_type_checking=with_type_checking)
        # Importing a submodule runs its parent package first: not an edge of its own.
        graph[name] = {t for t in targets if t in MODULES and t != name and t != PKG}
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == 1:
                return stack[stack.index(target) :] + [target]
            if target not in state:
                found = visit(target)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_the_import_graph_has_no_circle() -> None:
    assert _cycle(_graph()) is None


def test_the_cycle_finder_finds_a_circle() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def _third_party(name: str) -> set[str]:
    return {m.split(".")[0] for m in _imports(name, MODULES[name]) if not m.startswith(PKG)}


def _package_imports(name: str) -> set[str]:
    return {m for m in _graph()[name]}


def test_protocol_imports_nothing_from_the_package() -> None:
    assert _package_imports(f"{PKG}.protocol") == set()


@pytest.mark.parametrize(
    ("layer", "forbidden_modules", "forbidden_packages"),
    [
        ("core", {"tasks", "server", "kernel"}, {"jupyter_server", "tornado", "ipywidgets"}),
        ("tasks", {"server", "kernel"}, {"jupyter_server", "tornado", "ipywidgets"}),
        ("server", {"kernel"}, {"ipywidgets", "anywidget", "websockets"}),
        ("kernel", {"server"}, {"jupyter_server", "tornado"}),
    ],
)
def test_each_layer_imports_only_what_is_above_it(
    layer: str, forbidden_modules: set[str], forbidden_packages: set[str]
) -> None:
    prefix = f"{PKG}.{layer}"
    members = [name for name in MODULES if name == prefix or name.startswith(prefix + ".")]
    assert members
    for name in members:
        bad = {
            target
            for target in _package_imports(name)
            if target.split(".")[1] in forbidden_modules
        }
        assert not bad, f"{name} imports {bad}"
        assert not (_third_party(name) & forbidden_packages), name


def test_server_handlers_do_not_import_the_app() -> None:
    for name in (f"{PKG}.server.rest", f"{PKG}.server.websocket", f"{PKG}.server.base"):
        assert f"{PKG}.server.app" not in _package_imports(name)


CONTRACT = re.compile(r"4004|unknown_task|X-AgentKit|AGENTKIT_SERVER_|1 << 62")


def test_the_contract_is_spelled_out_only_in_the_protocol_modules() -> None:
    allowed = {
        PACKAGE / "protocol.py",
        ROOT / "labextension" / "src" / "protocol.generated.ts",
    }
    sources = [p for p in MODULES.values()] + list((ROOT / "labextension" / "src").glob("*.ts"))
    offenders = [
        f"{path.relative_to(ROOT)}:{number}"
        for path in sources
        if path not in allowed
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if CONTRACT.search(line)
    ]
    assert offenders == []


def test_the_frame_writer_still_fits_this_tornado() -> None:
    """If this fails, a Tornado release changed what server/frames.py relies on."""
    assert check_tornado_internals() == []


def test_user_imports_work_from_the_package_top() -> None:
    import agentkit_jupyter as ak

    for name in ("run", "Agent", "tool", "TaskWidget", "AgentKitClient", "ServerInfo"):
        assert getattr(ak, name) is not None
    assert {"run", "Agent", "tool"} <= set(dir(ak))
    with pytest.raises(AttributeError):
        _ = ak.no_such_name  # type: ignore[attr-defined]
