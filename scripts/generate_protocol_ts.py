#!/usr/bin/env python3
"""Generate ``labextension/src/protocol.generated.ts`` from ``agentkit_jupyter/protocol.py``.

The Python module is the wire contract; the browser takes its statuses, codes,
names and message shapes from the generated TypeScript, so the two cannot drift.
Everything is read by introspection (enums, module constants, ``TypedDict`` and
pydantic message classes, union aliases); comments next to enum members and above
constants become doc comments. A constant or a field type the generator does not
know is an error, not something silently left out.

    python scripts/generate_protocol_ts.py          # write the file
    python scripts/generate_protocol_ts.py --check  # exit 1 if the committed file differs

``protocol.py`` is loaded from its file, not imported through the package, so this
works whatever state the rest of the package is in.
"""

from __future__ import annotations

import argparse
import ast
import difflib
import enum
import importlib.util
import inspect
import io
import re
import sys
import textwrap
import tokenize
import types
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NotRequired, Required

import pydantic

ROOT = Path(__file__).resolve().parents[1]
PROTOCOL_PATH = ROOT / "agentkit_jupyter" / "protocol.py"
OUTPUT_PATH = ROOT / "labextension" / "src" / "protocol.generated.ts"

HEADER = (
    "// Generated from agentkit_jupyter/protocol.py by scripts/generate_protocol_ts.py; "
    "do not edit.\n"
    "// Regenerate with `python scripts/generate_protocol_ts.py` after changing protocol.py."
)
# The width the TypeScript sources are formatted to (prettier's printWidth there).
WIDTH = 100
INDENT = "  "
# The module name protocol.py is loaded under (not the package's, which may not import).
MODULE_NAME = "_agentkit_protocol_for_ts"

# Module constants handled by their own section.
SPECIAL_CONSTANTS = frozenset({"PROTOCOL_VERSION", "FINAL_STATUSES"})
# Module constants that are not part of the contract the browser needs.
SKIPPED_CONSTANTS = frozenset(
    {
        "PONG",  # the serialised pong frame, built once on the Python side
    }
)

_CONSTANT_NAME = re.compile(r"^[A-Z][A-Z0-9_]*$")
_TYPE_NAME = re.compile(r"^[A-Z][A-Za-z0-9]*$")
_IDENTIFIER = re.compile(r"^[A-Za-z_$][A-Za-z0-9_$]*$")


# -- loading ------------------------------------------------------------------------------


def load_protocol(path: Path = PROTOCOL_PATH, text: str | None = None) -> types.ModuleType:
    """Execute ``protocol.py`` as a stand-alone module (it imports nothing from the package).

    ``text``: the source to run (as read once by the caller, who also parses its
    comments: both then see the same version of a file being edited).
    """
    spec = importlib.util.spec_from_file_location(MODULE_NAME, path)
    if spec is None or spec.loader is None:
        raise RuntimeError(f"cannot load {path}")
    if text is None:
        text = path.read_text(encoding="utf-8")
    module = importlib.util.module_from_spec(spec)
    # Registered while it runs: typing.get_type_hints() and pydantic resolve the
    # (PEP 563, string) annotations through sys.modules[cls.__module__].
    previous = sys.modules.get(MODULE_NAME)
    sys.modules[MODULE_NAME] = module
    try:
        exec(compile(text, str(path), "exec"), vars(module))
    except BaseException:
        if previous is None:
            sys.modules.pop(MODULE_NAME, None)
        else:
            sys.modules[MODULE_NAME] = previous
        raise
    return module


class _Source:
    """The comments of ``protocol.py``, by line, and the line of each top-level name."""

    def __init__(self, text: str) -> None:
        self.tree = ast.parse(text)
        self.comments: dict[int, str] = {}  # line -> comment text (without '#')
        self.comment_only: set[int] = set()  # lines holding nothing but a comment
        for token in tokenize.generate_tokens(io.StringIO(text).readline):
            if token.type == tokenize.COMMENT:
                line = token.start[0]
                self.comments[line] = token.string.lstrip("#").strip()
                if not token.line[: token.start[1]].strip():
                    self.comment_only.add(line)

    def doc_for(self, lineno: int) -> str:
        """The comment block directly above ``lineno``, or else the comment on that line."""
        above: list[str] = []
        line = lineno - 1
        while line in self.comment_only:
            above.append(self.comments[line])
            line -= 1
        if above:
            return " ".join(reversed(above))
        if lineno not in self.comment_only and lineno in self.comments:
            return self.comments[lineno]
        return ""

    def assignments(self, body: list[ast.stmt]) -> Iterator[tuple[str, int, int]]:
        """``(name, first line, last line)`` of each plain ``NAME = ...`` or
        ``NAME: T = ...`` in ``body``."""
        for node in body:
            end = node.end_lineno or node.lineno
            if isinstance(node, ast.Assign):
                for target in node.targets:
                    if isinstance(target, ast.Name):
                        yield target.id, node.lineno, end
            elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
                if node.value is not None:
                    yield node.target.id, node.lineno, end

    def fields(self, body: list[ast.stmt]) -> Iterator[tuple[str, int]]:
        """``(name, line)`` of each annotated ``name: T`` (with or without a value)."""
        for node in body:
            if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
                yield node.target.id, node.lineno

    def classes(self) -> Iterator[ast.ClassDef]:
        for node in self.tree.body:
            if isinstance(node, ast.ClassDef):
                yield node


# -- TypeScript text ----------------------------------------------------------------------


def ts_string(value: str) -> str:
    """A single-quoted TypeScript string literal."""
    escaped = (
        value.replace("\\", "\\\\")
        .replace("'", "\\'")
        .replace("\n", "\\n")
        .replace("\r", "\\r")
        .replace("\t", "\\t")
    )
    return f"'{escaped}'"


def ts_literal(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, enum.Enum):
        return ts_literal(value.value)
    if isinstance(value, str):
        return ts_string(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value)
    if value is None:
        return "null"
    raise TypeError(f"no TypeScript literal for {value!r}")


def doc_comment(text: str | None, indent: str = "") -> list[str]:
    """``text`` (a docstring or a comment) as a JSDoc comment, RST ``code`` as Markdown."""
    if not text:
        return []
    cleaned = inspect.cleandoc(text).replace("``", "`").replace("*/", "*\\/")
    single = f"{indent}/** {cleaned} */"
    if "\n" not in cleaned and len(single) <= WIDTH:
        return [single]
    # Paragraphs re-wrapped to the width; indented lines (examples) kept as they are.
    lines: list[str] = []
    paragraph: list[str] = []
    width = WIDTH - len(indent) - 3

    def flush() -> None:
        if paragraph:
            lines.extend(textwrap.wrap(" ".join(paragraph), width, break_on_hyphens=False))
            paragraph.clear()

    for line in cleaned.splitlines():
        if not line.strip() or line[0].isspace():
            flush()
            lines.append(line.rstrip())
        else:
            paragraph.append(line.strip())
    flush()
    return [f"{indent}/**"] + [f"{indent} * {line}".rstrip() for line in lines] + [f"{indent} */"]


def interface_name(cls: type) -> str:
    return f"I{cls.__name__}"


def _is_message_class(value: object) -> bool:
    return isinstance(value, type) and (
        typing.is_typeddict(value)
        or (issubclass(value, pydantic.BaseModel) and not value.__name__.startswith("_"))
    )


def _union_members(tp: Any) -> tuple[Any, ...] | None:
    if typing.get_origin(tp) is typing.Annotated:
        tp = typing.get_args(tp)[0]
    if isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union:
        return typing.get_args(tp)
    return None


def ts_type(tp: Any, enums: dict[type, str]) -> str:
    """The TypeScript type of a Python annotation (an error for what has no mapping)."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is typing.Annotated:
        return ts_type(args[0], enums)
    if origin in (NotRequired, Required):
        return ts_type(args[0], enums)
    if tp is Any or tp is object:
        return "unknown"
    if tp is None or tp is type(None):
        return "null"
    if tp is str:
        return "string"
    if tp is bool:
        return "boolean"
    if tp is int or tp is float:
        return "number"
    if isinstance(tp, type) and tp in enums:
        return enums[tp]
    if _is_message_class(tp):
        return interface_name(tp)
    if origin is typing.Literal:
        return " | ".join(ts_literal(arg) for arg in args)
    members = _union_members(tp)
    if members is not None:
        # `X | None` -> `X | null`: null last, as the code style writes it.
        rendered = [ts_type(arg, enums) for arg in members if arg is not type(None)]
        if type(None) in members:
            rendered.append("null")
        return " | ".join(rendered)
    if origin is dict:
        key, value = args or (str, Any)
        if key is not str:
            raise TypeError(f"only str keys map to TypeScript: {tp!r}")
        return f"{{ [key: string]: {ts_type(value, enums)} }}"
    if origin in (list, tuple, frozenset, set) or tp in (list, tuple):
        if origin is tuple and args and args[-1] is not Ellipsis:
            return "[" + ", ".join(ts_type(arg, enums) for arg in args) + "]"
        item = ts_type(args[0], enums) if args else "unknown"
        return f"({item})[]" if _is_union(item) else f"{item}[]"
    raise TypeError(f"no TypeScript type for the annotation {tp!r}")


def _is_union(ts: str) -> bool:
    """Whether a TypeScript type has a ``|`` outside any brackets (needs parentheses)."""
    depth = 0
    quoted = False
    for char in ts:
        if char == "'":
            quoted = not quoted
        elif quoted:
            continue
        elif char in "{[(":
            depth += 1
        elif char in "}])":
            depth -= 1
        elif char == "|" and depth == 0:
            return True
    return False


def _fields(cls: type) -> list[tuple[str, Any, bool]]:
    """``(name, annotation, optional)`` of each field of a message class, in order."""
    if typing.is_typeddict(cls):
        hints = typing.get_type_hints(cls, include_extras=True)
        fields = []
        for name, hint in hints.items():
            origin = typing.get_origin(hint)
            optional = origin is NotRequired or (
                origin is not Required and not getattr(cls, "__total__", True)
            )
            fields.append((name, hint, optional))
        return fields
    assert issubclass(cls, pydantic.BaseModel)
    return [
        (name, info.annotation, not info.is_required()) for name, info in cls.model_fields.items()
    ]


def _property(name: str) -> str:
    return name if _IDENTIFIER.match(name) else ts_string(name)


def _array(name: str, values: list[str], suffix: str = " as const") -> list[str]:
    """``export const NAME = [...]`` on one line when it fits, one item a line if not."""
    one_line = f"export const {name} = [{', '.join(values)}]{suffix};"
    if len(one_line) <= WIDTH:
        return [one_line]
    return (
        [f"export const {name} = ["]
        + [f"{INDENT}{value}{',' if i < len(values) - 1 else ''}" for i, value in enumerate(values)]
        + [f"]{suffix};"]
    )


def _type_union(name: str, members: list[str]) -> list[str]:
    one_line = f"export type {name} = {' | '.join(members)};"
    if len(one_line) <= WIDTH:
        return [one_line]
    lines = [f"export type {name} ="] + [f"{INDENT}| {member}" for member in members]
    lines[-1] += ";"
    return lines


def _section(title: str) -> list[str]:
    """A section comment as the TypeScript sources write them (80 columns)."""
    rule = "// -- " + title + " "
    return ["", rule + "-" * max(3, 80 - len(rule)), ""]


# -- the generator ------------------------------------------------------------------------


def generate(path: Path = PROTOCOL_PATH) -> str:
    """The text of ``protocol.generated.ts`` for the ``protocol.py`` at ``path``."""
    text = path.read_text(encoding="utf-8")
    module = load_protocol(path, text)
    source = _Source(text)
    ns = vars(module)

    def own(value: object) -> bool:
        return getattr(value, "__module__", None) == module.__name__

    enum_classes: list[tuple[type[enum.Enum], ast.ClassDef]] = []
    message_classes: list[tuple[type, ast.ClassDef]] = []
    for node in source.classes():
        value = ns.get(node.name)
        if not own(value) or node.name.startswith("_"):
            continue
        if isinstance(value, type) and issubclass(value, enum.Enum):
            enum_classes.append((value, node))
        elif _is_message_class(value):
            assert isinstance(value, type)
            message_classes.append((value, node))
    enums: dict[type, str] = {cls: cls.__name__ for cls, _ in enum_classes}
    task_status = ns["TaskStatus"]

    out: list[str] = [HEADER]

    version = ns["PROTOCOL_VERSION"]
    assert isinstance(version, int)
    out += ["", "/** The version of the wire protocol (`connected` messages carry it). */"]
    out.append(f"export const PROTOCOL_VERSION = {version};")

    # Enums: a const object of the members and the type of its values, like a TS enum
    # without the runtime oddities (`ErrorCode.UNKNOWN_TASK`, type `ErrorCode`).
    for cls, node in enum_classes:
        out += _section(cls.__name__)
        out += doc_comment(cls.__doc__)
        out.append(f"export const {cls.__name__} = {{")
        lines = {name: line for name, line, _end in source.assignments(node.body)}
        members = list(cls)
        for i, member in enumerate(members):
            line = lines.get(member.name)
            out += doc_comment(source.doc_for(line) if line else "", INDENT)
            comma = "," if i < len(members) - 1 else ""
            out.append(f"{INDENT}{member.name}: {ts_literal(member.value)}{comma}")
        out.append("} as const;")
        name = cls.__name__
        out.append(f"export type {name} = (typeof {name})[keyof typeof {name}];")
        if cls is task_status:
            final = ns["FINAL_STATUSES"]
            out += ["", "/** Every status, in lifecycle order. */"]
            out += _array("TASK_STATUSES", [ts_literal(s) for s in cls])
            out += ["", "/** The statuses a task ends in (it never changes again). */"]
            out += _array("FINAL_STATUSES", [ts_literal(s) for s in cls if s in final])
            out.append("export type FinalStatus = (typeof FINAL_STATUSES)[number];")

    out += _section("names: paths, headers, environment, mimetypes, message types")
    # Constants that are one group in protocol.py (consecutive lines) stay one here.
    previous_end: int | None = None
    for name, lineno, end in source.assignments(source.tree.body):
        if not _CONSTANT_NAME.match(name) or name in SPECIAL_CONSTANTS | SKIPPED_CONSTANTS:
            continue
        value = ns[name]
        if previous_end is not None and lineno != previous_end + 1:
            out.append("")
        previous_end = end
        out += doc_comment(source.doc_for(lineno))
        if isinstance(value, str | int) and not isinstance(value, bool | enum.Enum):
            out.append(f"export const {name} = {ts_literal(value)};")
        elif isinstance(value, tuple) and all(isinstance(v, str) for v in value):
            out += _array(name, [ts_literal(v) for v in value])
            if name.endswith("_TYPES"):
                type_name = _camel(name[: -len("_TYPES")]) + "Type"
                out.append(f"export type {type_name} = (typeof {name})[number];")
        elif (
            isinstance(value, frozenset)
            and value
            and all(isinstance(v, enum.Enum) for v in value)
        ):
            # A set of enum members, in the enum's order (a set has none of its own).
            members = [m for m in type(next(iter(value))) if m in value]
            out += _array(name, [ts_literal(m.value) for m in members])
        else:
            raise TypeError(
                f"protocol.{name} = {value!r}: no TypeScript form for it; teach "
                "scripts/generate_protocol_ts.py, or add it to SKIPPED_CONSTANTS"
            )

    out += _section("messages")
    for i, (cls, node) in enumerate(message_classes):
        if i:
            out.append("")
        out += doc_comment(cls.__doc__)
        out.append(f"export interface {interface_name(cls)} {{")
        field_lines = dict(source.fields(node.body))
        for field, hint, optional in _fields(cls):
            line = field_lines.get(field)
            out += doc_comment(source.doc_for(line) if line else "", INDENT)
            mark = "?" if optional else ""
            out.append(f"{INDENT}{_property(field)}{mark}: {ts_type(hint, enums)};")
        out.append("}")

    # `ServerMessage = StepMessage | ...`: a union of message classes, as a TS union.
    aliases: list[tuple[str, list[str]]] = []
    for name, _lineno, _end in source.assignments(source.tree.body):
        union = _union_members(ns[name]) if _TYPE_NAME.match(name) else None
        if union and all(_is_message_class(m) for m in union):
            aliases.append((name, [interface_name(m) for m in union]))
    if aliases:
        out += _section("message unions")
        for i, (name, interfaces) in enumerate(aliases):
            if i:
                out.append("")
            out += _type_union(name, interfaces)

    return "\n".join(out) + "\n"


def _camel(name: str) -> str:
    """``SERVER_MESSAGE`` -> ``ServerMessage``."""
    return "".join(part.capitalize() for part in name.lower().split("_"))


def check(expected: str, path: Path = OUTPUT_PATH) -> str | None:
    """``None`` when ``path`` holds ``expected``, else what differs (a unified diff)."""
    try:
        current = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return f"{path} does not exist"
    if current == expected:
        return None
    diff = difflib.unified_diff(
        current.splitlines(keepends=True),
        expected.splitlines(keepends=True),
        fromfile=f"{path.name} (committed)",
        tofile=f"{path.name} (generated)",
    )
    return "".join(diff)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--check",
        action="store_true",
        help="do not write; exit 1 if the committed file differs from what would be generated",
    )
    args = parser.parse_args(argv)
    text = generate()
    rel = OUTPUT_PATH.relative_to(ROOT)
    if args.check:
        problem = check(text)
        if problem is None:
            print(f"{rel} is up to date")
            return 0
        print(
            f"{rel} is out of date with agentkit_jupyter/protocol.py; "
            f"run: python scripts/generate_protocol_ts.py\n{problem}",
            file=sys.stderr,
        )
        return 1
    OUTPUT_PATH.write_text(text, encoding="utf-8")
    print(f"wrote {rel}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
