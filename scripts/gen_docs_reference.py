"""Generated reference pages: the command line (from the argparse parser) and the config schema
(from the config models), so neither can drift from the code.

Used two ways:

- as a MkDocs hook (``hooks:`` in mkdocs.yml): a page holding the marker ``<!-- generated: cli -->``
  or ``<!-- generated: config -->`` gets the text in its place at every build (and docstrings'
  reST roles are shown as plain code);
- as a script: ``python scripts/gen_docs_reference.py cli|config`` prints the same Markdown.
"""
from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
import os
import re
import sys
import textwrap
import typing
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
MARKER = "<!-- generated: {} -->"


def _import_tree() -> None:
    """Document the tree being built, not whatever forgetkit is installed."""
    if str(SRC) not in sys.path:
        sys.path.insert(0, str(SRC))


# ---------------------------------------------------------------------------------------------
# command line
# ---------------------------------------------------------------------------------------------

def _subcommands(parser: argparse.ArgumentParser) -> list[tuple[str, str, argparse.ArgumentParser]]:
    out = []
    for action in parser._actions:  # argparse keeps subcommands only here
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help or "" for a in action._choices_actions}
            out += [(name, helps.get(name, ""), sub) for name, sub in action.choices.items()]
    return out


def cli_reference() -> str:
    _import_tree()
    from forgetkit.cli import build_parser

    old = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = "100"  # the same wrapping on every machine
    try:
        parser = build_parser()
        parts = ["```text", parser.format_help().rstrip(), "```", ""]
        for name, help_, sub in _subcommands(parser):
            parts += [f"## forgetkit {name}", "", help_[:1].upper() + help_[1:] + ("." if help_ else ""), "",
                      "```text", sub.format_help().rstrip(), "```", ""]
    finally:
        if old is None:
            os.environ.pop("COLUMNS", None)
        else:
            os.environ["COLUMNS"] = old
    return "\n".join(parts)


# ---------------------------------------------------------------------------------------------
# config schema
# ---------------------------------------------------------------------------------------------

def _attribute_docs(cls) -> dict[str, str]:
    """The docstring under each annotated field (``x: int = 1`` then ``\"\"\"...\"\"\"``), over the MRO."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
        except (OSError, TypeError):
            continue
        body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
        for node, nxt in zip(body, body[1:]):
            if (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
                    and isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant)
                    and isinstance(nxt.value.value, str)):
                docs[node.target.id] = _markdown(" ".join(nxt.value.value.split()))
    return docs


def _markdown(text: str) -> str:
    """Docstring markup (reST) as Markdown: ``x`` → `x`, :class:`x` → `x`."""
    return re.sub(r":\w+:`([^`]+)`", r"`\1`", text.replace("``", "`"))


def _type_name(tp) -> str:
    if isinstance(tp, str):
        return tp
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is typing.Literal:
        return " \\| ".join(repr(a) for a in args)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        return " \\| ".join(_type_name(a) for a in args)
    if origin is not None:
        inner = ", ".join("..." if a is Ellipsis else _type_name(a) for a in args)
        return f"{getattr(origin, '__name__', str(origin))}[{inner}]"
    if tp is type(None):
        return "None"
    return getattr(tp, "__name__", str(tp))


def _constraints(metadata) -> str:
    signs = {"gt": ">", "ge": "≥", "lt": "<", "le": "≤"}
    out = [f"{signs[k]} {getattr(m, k)}" for m in metadata for k in signs if getattr(m, k, None) is not None]
    return ", ".join(out)


def _nested(tp) -> list[type]:
    """Config classes (pydantic models or dataclasses) named inside an annotation."""
    from pydantic import BaseModel

    if isinstance(tp, type) and (issubclass(tp, BaseModel) or dataclasses.is_dataclass(tp)):
        return [tp]
    return [c for a in typing.get_args(tp) for c in _nested(a)]


def _rows(cls) -> list[tuple[str, str, str, str, list[type]]]:
    """(field, type, default, meaning, nested classes) for a pydantic model or a dataclass."""
    from pydantic import BaseModel
    from pydantic_core import PydanticUndefined

    docs = _attribute_docs(cls)
    rows = []
    if issubclass(cls, BaseModel):
        for name, f in cls.model_fields.items():
            if f.default is not PydanticUndefined:
                default = repr(f.default)
            elif f.default_factory is not None:
                default = repr(f.default_factory())
            else:
                default = "required"
            if _nested(f.annotation):
                default = "see below" if default != "required" else default
            kind = _type_name(f.annotation)
            if _constraints(f.metadata):
                kind += f" ({_constraints(f.metadata)})"
            rows.append((name, kind, default, docs.get(name, ""), _nested(f.annotation)))
    else:
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            if f.default is not dataclasses.MISSING:
                default = repr(f.default)
            elif f.default_factory is not dataclasses.MISSING:
                default = repr(f.default_factory())
            else:
                default = "required"
            rows.append((f.name, _type_name(hints.get(f.name, f.type)), default, docs.get(f.name, ""), []))
    return rows


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ") if "\\|" not in text else text.replace("\n", " ")


def _schema_tables(root, title: str) -> list[str]:
    parts, seen, queue = [], set(), [(root, title)]
    while queue:
        cls, where = queue.pop(0)
        if cls in seen:
            continue
        seen.add(cls)
        own = cls.__dict__.get("__doc__") or ""  # not the base class's
        summary = _markdown(" ".join(inspect.cleandoc(own).split("\n\n")[0].split()))
        parts += [f"### `{where}`", "", f"`{cls.__module__}.{cls.__name__}`" + (f": {summary}" if summary else ""), "",
                  "| field | type | default | meaning |", "| --- | --- | --- | --- |"]
        for name, kind, default, doc, nested in _rows(cls):
            parts.append(f"| `{name}` | {_cell(kind)} | `{_cell(default)}` | {_cell(doc)} |")
            prefix = "" if where == title else f"{where}."
            queue += [(n, f"{prefix}{name}") for n in nested]
        parts.append("")
    return parts


def _request_shapes() -> list[str]:
    """A request's keys besides kind/name/role are its shape's options: one table per registered shape."""
    try:
        from forgetkit.data.requests import REQUEST_SHAPES
    except ImportError:  # a tree without the shape registry
        return []
    parts = ["### Request shapes (`requests[].kind`)", "",
             "Each request names a registered shape with `kind:`; its other keys are that shape's options.", ""]
    for name, cls in sorted(REQUEST_SHAPES.items()):
        own = cls.__dict__.get("__doc__") or ""
        summary = _markdown(" ".join(inspect.cleandoc(own).split("\n\n")[0].split()))
        parts += [f"#### `kind: {name}`", "", summary, ""]
        rows = _rows(cls) if dataclasses.is_dataclass(cls) else []
        if rows:
            parts += ["| option | type | default | meaning |", "| --- | --- | --- | --- |"]
            parts += [f"| `{f}` | {_cell(k)} | `{_cell(d)}` | {_cell(doc)} |" for f, k, d, doc, _ in rows
                      if not f.startswith("_")]  # private state, not an option
        parts.append("")
    return parts


def _paper_block() -> list[str]:
    """The ``paper:`` block of a preset under configs/papers/ (the published numbers shown beside ours)."""
    try:
        from forgetkit.bench.papers import PaperNumbers
    except ImportError:  # a tree without reproduction presets
        return []
    parts = ["## The paper block of a reproduction preset", "",
             "A preset under `configs/papers/` adds `paper:`, the published numbers of the table it reproduces; "
             "the report prints each metric as \"paper / ours\".", ""]
    tables = _schema_tables(PaperNumbers, "paper")
    return parts + [line.replace("### `rows`", "### `paper.rows`") for line in tables]


def config_reference() -> str:
    _import_tree()
    from forgetkit.bench.config import ExperimentConfig
    from forgetkit.influence.experiment import SoftWeightingConfig

    parts = ["## Forgetting experiments (`experiment_type: forget`, the default)", ""]
    parts += _schema_tables(ExperimentConfig, "top level")
    parts += _request_shapes()
    parts += _paper_block()
    parts += ["## Soft-weighting experiments (`experiment_type: soft-weighting`)", ""]
    parts += _schema_tables(SoftWeightingConfig, "top level")
    return "\n".join(parts).replace("### `top level`", "### Top level")


GENERATORS = {"cli": cli_reference, "config": config_reference}


def on_page_markdown(markdown: str, page, config, files) -> str:  # MkDocs hook
    for name, make in GENERATORS.items():
        if MARKER.format(name) in markdown:
            markdown = markdown.replace(MARKER.format(name), make())
    return markdown


def on_page_content(html: str, page, config, files) -> str:  # MkDocs hook
    """Docstrings cite with reST roles (:func:`unlearn`); the API pages show just the name."""
    html = re.sub(r":(?:func|class|meth|attr|data|mod|obj|exc):(<code>)", r"\1", html)
    return re.sub(r"<code>~(?:[\w]+\.)*(\w+)</code>", r"<code>\1</code>", html)  # ~a.b.C shows as C


if __name__ == "__main__":
    if len(sys.argv) != 2 or sys.argv[1] not in GENERATORS:
        sys.exit(f"usage: python {sys.argv[0]} {'|'.join(GENERATORS)}")
    print(GENERATORS[sys.argv[1]]())
