"""Config text → a plain mapping: YAML read as people write it, and every value a config can hold.

Config files and ``--set`` values go through one loader: safe, numbers as written (``1e-3`` is a
float), no duplicate keys, UTF-8 only. What it returns is then made plain (:func:`plain_values`):
a tree of mappings, lists, strings, finite numbers and booleans, with no node shared between two
places (a YAML alias becomes a copy, so a ``--set`` on one entry never edits another), and of a
bounded size, so an alias bomb is refused instead of expanded. Every refusal names the field.
"""
from __future__ import annotations

import datetime
import math
import re
from pathlib import Path

import yaml

MAX_VALUES = 100_000
"""values a config may hold once aliases are expanded (the largest preset holds a few hundred)"""
MAX_DEPTH = 64
"""nesting a config may have (the schema's deepest field is about six levels down)"""
INT_LIMIT = 2**63
"""integers must fit 64 bits: numpy, torch and SQLite take nothing larger"""


class DuplicateKeyError(ValueError):
    """A mapping names the same key twice (YAML would silently keep the last one)."""


class _ConfigLoader(yaml.SafeLoader):
    """SafeLoader that reads ``1e-3`` and ``1e6`` as floats (YAML 1.1 needs a dot and a signed
    exponent, so they were strings) and refuses duplicate keys."""

    def construct_mapping(self, node, deep=False):
        seen: dict = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # `<<: *anchor` then an explicit key is an override, not a duplicate
            key = self.construct_object(key_node, deep=True)
            try:
                hash(key)
            except TypeError:  # an unhashable key: PyYAML reports it below
                continue
            mark = key_node.start_mark
            at = f"line {mark.line + 1}, column {mark.column + 1}"
            if key in seen:
                raise DuplicateKeyError(f"duplicate key {key!r} at {at} (first at {seen[key]}); keep only one")
            seen[key] = at
        return super().construct_mapping(node, deep)


_ConfigLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."))


def yaml_load(text: str):
    """Parse config YAML: safe, numbers as people write them, no duplicate keys."""
    try:
        return yaml.load(text, Loader=_ConfigLoader)  # noqa: S506  _ConfigLoader is a SafeLoader
    except RecursionError:
        raise yaml.YAMLError(f"nested deeper than Python can read (over {MAX_DEPTH} levels is refused)") from None


def _yaml_problem(e: Exception) -> str:
    text = str(e)
    if "'\\t'" in text:
        text += "\n(YAML indents with spaces, not tabs: replace the tabs)"
    return text


def _decode(p: Path, data: bytes) -> str:
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise ValueError(f"config {p} is UTF-16 text; save it as UTF-8")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data[:e.start].count(b"\n") + 1
        raise ValueError(f"config {p} is not UTF-8 text (byte 0x{data[e.start]:02x} on line {line}); "
                         "save it as UTF-8") from None


def load_raw(path: str | Path) -> dict:
    """The config file at ``path`` as a plain mapping (:func:`plain_values`); every way a file can
    fail to be one (missing, not UTF-8, empty, not YAML, not a mapping) is an error naming the file."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"config file {p} does not exist")
    if p.is_dir():
        raise ValueError(f"config {p} is a directory; give a YAML file")
    text = _decode(p, p.read_bytes())
    try:
        raw = yaml_load(text)
    except DuplicateKeyError as e:
        raise ValueError(f"config {p}: {e}") from None
    except yaml.YAMLError as e:
        raise ValueError(f"config {p} is not valid YAML: {_yaml_problem(e)}") from None
    if raw is None:
        raise ValueError(f"config {p} is empty; a config is a mapping of fields (name, requests, methods, …)")
    if not isinstance(raw, dict):
        raise ValueError(f"config {p} must be a mapping of fields, got {type(raw).__name__}")
    return check_shared_fields(plain_values(raw, f"config {p}: "), f"config {p}: ")


SHARED_FIELDS = {"experiment_type": (str,), "cache_dir": (str, type(None))}
"""fields every experiment kind has, which the command line reads before a kind's schema checks the rest"""


def check_shared_fields(raw: dict, prefix: str = "") -> dict:
    """``raw``, or a refusal naming a shared field of the wrong type (it picks the kind's schema,
    or a directory checked before any schema runs)."""
    for field, types in SHARED_FIELDS.items():
        if field in raw and not isinstance(raw[field], types):
            expected = " or ".join("null" if t is type(None) else "a string" for t in types)
            raise ValueError(f"{prefix}{field}: expected {expected}, got {raw[field]!r} ({type(raw[field]).__name__})")
    return raw


def apply_overrides(raw: dict, sets: list[str]) -> dict:
    """``key.sub=value`` overrides (value parsed as YAML, numbers as in a config file), e.g.
    ``--set train.epochs=3``; a path that does not exist in the config is an error naming it."""
    raw = plain_values(raw)
    for item in sets:
        if "=" not in item:
            raise ValueError(f"--set expects key=value, got {item!r}")
        key, text = item.split("=", 1)
        try:
            value = yaml_load(text)
        except (yaml.YAMLError, DuplicateKeyError) as e:
            raise ValueError(f"--set {key}: the value {text!r} is not valid YAML: {_yaml_problem(e)}") from None
        _set_path(raw, key, plain_values(value, "--set ", key))
    return check_shared_fields(raw, "--set: ")


def _set_path(raw: dict, key: str, value) -> None:
    """Set ``raw[a][b][0]...`` from ``a.b.0``; missing mapping keys are created, nothing else is."""
    parts = key.split(".")
    if not all(parts):
        raise ValueError(f"--set {key}: the path has an empty part")
    node = raw
    for i, p in enumerate(parts):
        last = i == len(parts) - 1
        where = ".".join(parts[:i])
        if isinstance(node, list):
            if not p.isdigit():
                raise ValueError(f"--set {key}: {where} is a list; pick an entry by its index "
                                 f"({where}.0 .. {where}.{len(node) - 1}), not {p!r}" if node else
                                 f"--set {key}: {where} is an empty list; it has no {p!r}")
            j = int(p)
            if j >= len(node):
                have = f"indices 0..{len(node) - 1}" if node else "no entries"
                raise ValueError(f"--set {key}: {where} has {len(node)} entries ({have}); there is no {where}.{j}")
            if last:
                node[j] = value
            else:
                node = node[j]
        elif isinstance(node, dict):
            if last:
                node[p] = value
            else:
                node = node.setdefault(p, {})
        else:
            raise ValueError(f"--set {key}: {where} is {node!r} ({type(node).__name__}), not a mapping, "
                             f"so it has no field {p!r}")


_WHAT_YAML_MADE = {bytes: "binary data (!!binary)", set: "a set (!!set)", datetime.datetime: "a date and time",
                   datetime.date: "a date"}


def plain_values(value, prefix: str = "", path: str = "", *, python: bool = False):
    """A fresh copy of a config tree in which every value is a mapping with string keys, a list, a
    string, a boolean, None, an integer that fits 64 bits or a finite float; anything else is a
    ``ValueError`` naming its field (``prefix`` + ``seeds.0: ...``). Tuples become lists.

    Copying (not ``deepcopy``, which keeps shared nodes shared) makes each alias of a YAML anchor
    its own value; the count of values and the depth are bounded, so an alias bomb or a thousand
    nested brackets are refused before anything walks them again. ``python``: a config built in
    Python may hold other objects (a function, a numpy number); they are left to the schema."""
    budget = [MAX_VALUES]

    def walk(v, where: str, depth: int):
        budget[0] -= 1
        at = f"{where}: " if where else ""
        if budget[0] < 0:
            raise ValueError(f"{prefix}the config holds over {MAX_VALUES} values (YAML aliases expanded); "
                             "a config that large is a mistake or an alias bomb")
        if depth > MAX_DEPTH:
            raise ValueError(f"{prefix}{at}nested deeper than {MAX_DEPTH} levels")
        if isinstance(v, dict):
            out = {}
            for k, item in v.items():
                if not isinstance(k, str):
                    raise ValueError(f"{prefix}{at}the key {k!r} ({type(k).__name__}) is not a field name; "
                                     "quote it to make it a string")
                out[k] = walk(item, f"{where}.{k}" if where else k, depth + 1)
            return out
        if isinstance(v, (list, tuple)):
            return [walk(item, f"{where}.{i}" if where else str(i), depth + 1) for i, item in enumerate(v)]
        if isinstance(v, float) and not math.isfinite(v):
            raise ValueError(f"{prefix}{at}{v} is not a finite number")
        if isinstance(v, int) and not isinstance(v, bool) and not -INT_LIMIT <= v < INT_LIMIT:
            raise ValueError(f"{prefix}{at}{v} is too large (integers must fit 64 bits)")
        if python or v is None or isinstance(v, (str, bool, int, float)):
            return v
        what = next((w for t, w in _WHAT_YAML_MADE.items() if isinstance(v, t)), type(v).__name__)
        shown = v.isoformat() if isinstance(v, datetime.date) else repr(v)
        raise ValueError(f"{prefix}{at}YAML read {shown} as {what}, which no field takes; quote it to make it "
                         "a string")

    return walk(value, path, 0)
