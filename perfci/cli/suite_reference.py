"""The suite-file reference (docs/suites.md), generated from the pydantic models in perfci/config.py.

Every key of every model reached from `Suite` gets a row: its type, default, bounds and description, read
from the model itself, so a key added to a model appears here without touching this module. Regenerate with

    python -m perfci.cli.suite_reference docs/suites.md

(tests/test_suite_reference.py fails while docs/suites.md differs from what this writes).
"""

from __future__ import annotations

import json
import sys
import types
import typing
from pathlib import Path

import annotated_types
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from perfci.config import Suite

REGENERATE = "python -m perfci.cli.suite_reference docs/suites.md"

INTRO = f"""\
# Suite files

<!-- Generated from perfci/config.py by `{REGENERATE}`; edit the models, not this file. -->

A suite is a TOML file: the models to serve, the workloads to send them (token shapes) with the load levels
each is measured at, how long every point runs, which engine starts are timed, and the SLO that goodput
counts against. `perfci run --suite NAME` loads a suite shipped with perfci by its name (`smoke`, for one;
an unknown name is an error that lists them); anything with a `/` or ending in `.toml` is a path to your
own. The shipped suites are examples:
[`suites/smoke.toml`](../suites/smoke.toml), [`suites/advisor.toml`](../suites/advisor.toml),
[`suites/startup.toml`](../suites/startup.toml).

A suite expands into **points**: every model × every workload serving it × every load level × every repeat
(`perfci.measure.suites.expand`). Unknown keys, wrong types and values out of bounds are errors that name the file,
the key path (as `workloads[0].load.rate[1]`) and the value given; `perfci run` then exits 2 and runs
nothing. Runs of a suite carry a hash of the file's content, so results of different versions of a suite
never mix in one series.

Each section below is one table of keys. *Bounds* are checked when the file is loaded; a key without a
default is required.
"""


def suite_reference_markdown(root: type[BaseModel] = Suite) -> str:
    """The whole reference page, as markdown: `root` (the suite file) and every model reached from it."""
    sections = [INTRO]
    for model, paths in _models(root, ""):
        sections.append(_section(model, paths))
    return "\n".join(sections)


def _models(root: type[BaseModel], path: str) -> list[tuple[type[BaseModel], list[str]]]:
    """Every model reachable from `root`, depth first in field order, with the key paths that reach it."""
    found: dict[type[BaseModel], list[str]] = {}

    def visit(model: type[BaseModel], at: str) -> None:
        first = model not in found
        found.setdefault(model, []).append(at)
        if not first:
            return
        for name, field in _fields(model):
            for nested, suffix in _nested(field.annotation):
                visit(nested, f"{at}.{name}{suffix}" if at else f"{name}{suffix}")

    visit(root, path)
    return list(found.items())


def _fields(model: type[BaseModel]) -> list[tuple[str, FieldInfo]]:
    """The keys a user writes: everything but what perfci sets itself when it loads the file."""
    return [
        (name, field)
        for name, field in model.model_fields.items()
        if not (isinstance(field.json_schema_extra, dict) and field.json_schema_extra.get("set_by_perfci"))
    ]


def _nested(annotation, suffix: str = "") -> list[tuple[type[BaseModel], str]]:
    """Models inside a field's type, with `[i]` for each list they sit in."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [(annotation, suffix)]
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Annotated:
        return _nested(args[0], suffix)
    if origin is list:
        return _nested(args[0], suffix + "[i]")
    if origin is dict:
        return _nested(args[1], suffix + ".KEY")
    return [m for arg in args for m in _nested(arg, suffix)]


def _section(model: type[BaseModel], paths: list[str]) -> str:
    where = ", ".join(f"`{p}`" for p in paths) if paths != [""] else "the top level of the file"
    lines = [f"## {model.__name__}", "", f"Where: {where}.", ""]
    if model.__doc__:
        lines += [" ".join(model.__doc__.split()), ""]
    lines += ["| key | type | default | bounds | description |", "|---|---|---|---|---|"]
    for name, field in _fields(model):
        cells = [f"`{name}`", _type(field.annotation), _default(field), _bounds(field.metadata),
                 field.description or ""]  # fmt: skip
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return "\n".join(lines) + "\n"


def _type(annotation) -> str:
    if annotation is type(None):
        return ""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return f"table ([{annotation.__name__}](#{annotation.__name__.lower()}))"
    simple = {str: "string", int: "integer", float: "number", bool: "boolean"}
    if annotation in simple:
        return simple[annotation]
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Annotated:
        bounds = _bounds([m for meta in args[1:] for m in (meta.metadata if isinstance(meta, FieldInfo) else [meta])])
        return f"{_type(args[0])} {bounds}".strip()
    if origin is typing.Literal:
        return " or ".join(f"`{json.dumps(a)}`" for a in args)
    if origin is list:
        return f"array of {_type(args[0])}"
    if origin is dict:
        return f"table of {_type(args[1])}"
    if origin in (typing.Union, types.UnionType):
        shown = [_type(a) for a in args if a is not type(None)]
        return " or ".join(shown) + (", or unset" if type(None) in args else "")
    return str(annotation)


def _default(field: FieldInfo) -> str:
    if field.default_factory is not None:
        return _toml(field.default_factory())
    if field.default is PydanticUndefined:
        return "required"
    return _toml(field.default)


def _toml(value) -> str:
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, BaseModel):
        given = {k: getattr(value, k) for k in sorted(value.model_fields_set)}
        return "`{ " + ", ".join(f"{k} = {_plain(v)}" for k, v in given.items()) + " }`" if given else "all defaults"
    return f"`{_plain(value)}`"


def _plain(value) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return json.dumps(value)


def _bounds(metadata) -> str:
    words = []
    for m in metadata:
        if isinstance(m, annotated_types.Ge):
            words.append(f"≥ {_plain(m.ge)}")
        elif isinstance(m, annotated_types.Gt):
            words.append(f"> {_plain(m.gt)}")
        elif isinstance(m, annotated_types.Le):
            words.append(f"≤ {_plain(m.le)}")
        elif isinstance(m, annotated_types.Lt):
            words.append(f"< {_plain(m.lt)}")
        elif isinstance(m, annotated_types.MinLen):
            words.append(f"at least {m.min_length} item{'s' * (m.min_length != 1)}")
        elif isinstance(m, annotated_types.MaxLen):
            words.append(f"at most {m.max_length} item{'s' * (m.max_length != 1)}")
        elif getattr(m, "pattern", None):
            words.append(f"matches `{m.pattern}`")
    return ", ".join(words)


def _cell(text: str) -> str:
    """Table-safe: a `|` would end the cell."""
    return text.replace("|", "\\|")


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print(f"usage: {REGENERATE}", file=sys.stderr)
        return 2
    Path(args[0]).write_text(suite_reference_markdown())
    return 0


if __name__ == "__main__":
    sys.exit(main())
