"""Experiment configs: YAML validated into typed objects; a bad field is an error naming it."""
from __future__ import annotations

import copy
import dataclasses
import json
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ..train import TrainRecipe


class StrictModel(BaseModel):
    """Base of every config schema: an unknown field is an error, never ignored."""

    model_config = ConfigDict(extra="forbid")


def validate_schema(schema: type[BaseModel], raw):
    """``schema.model_validate(raw)`` with errors as one ``field: problem`` line each (no pydantic dump)."""
    if not isinstance(raw, dict):
        raise ValueError(f"invalid config: expected a mapping of fields, got {type(raw).__name__}")
    try:
        return schema.model_validate(raw)
    except ValidationError as e:
        lines = [": ".join(part for part in (".".join(str(x) for x in err["loc"]),
                                             err["msg"].removeprefix("Value error, ")) if part)
                 for err in e.errors()]
        raise ValueError("invalid config:\n  " + "\n  ".join(lines)) from None


class ModelSpec(StrictModel):
    name: str = "cnn"
    """architecture in ``forgetkit.models.MODELS``"""
    options: dict[str, Any] = Field(default_factory=dict)
    """keyword options of the architecture (e.g. width)"""


LEGACY_REQUEST_FIELDS = {"fraction": None, "classes": None, "ratio": None, "gamma": None, "natural_order": False,
                         "keep_one": False, "whole": None, "partial": None}
"""the options every request carried when the schema listed the four built-in shapes' fields itself:
configs dumped then (``experiment.json``) hold them all, at these values where unused, and cell keys
hash them, so results stores written then resume with nothing re-run"""


class RequestSpec(BaseModel):
    """A forget request: the registered shape (``kind``), its name in reports, its role, and the
    shape's own options as further keys (``fraction: 0.1``), checked against what the shape declares."""

    model_config = ConfigDict(extra="allow")
    kind: str
    """a shape in ``forgetkit.data.requests.REQUEST_SHAPES`` (``forgetkit methods`` lists them)"""
    name: str | None = None
    """the request shape's name in reports and the leaderboard (default: the request's own name)"""
    role: Literal["report", "validation"] = "report"
    """validation requests are for tuning only and never reported"""

    @field_validator("kind")
    @classmethod
    def _registered(cls, kind: str) -> str:
        from ..data.requests import REQUEST_SHAPES
        from ..options import suggestion

        if kind not in REQUEST_SHAPES:
            raise ValueError(f"unknown request shape {kind!r}{suggestion(kind, REQUEST_SHAPES.names())}; "
                             f"known: {', '.join(REQUEST_SHAPES.names())}")
        return kind

    @property
    def options(self) -> dict[str, Any]:
        """The shape's options as given (after :class:`ExperimentConfig` checked them)."""
        return dict(self.__pydantic_extra__ or {})

    def shape(self):
        """The configured :class:`forgetkit.data.requests.RequestShape`."""
        from ..data.requests import make_shape

        return make_shape(self.kind, self.options)

    def check_options(self, where: str) -> None:
        """Check the options against the shape (errors start with ``where``) and keep them as the
        shape stores them (an int given for a float becomes a float, as cell keys always hashed it).
        A legacy field at its unused value (from a dumped config) is dropped."""
        from ..data.requests import REQUEST_SHAPES, make_shape

        declared = {f.name for f in dataclasses.fields(REQUEST_SHAPES.get(self.kind))}
        given = {k: v for k, v in self.options.items()
                 if k in declared or k not in LEGACY_REQUEST_FIELDS or v != LEGACY_REQUEST_FIELDS[k]}
        shape = make_shape(self.kind, given, where)
        self.__pydantic_extra__ = {k: getattr(shape, k) for k in given}


class MethodSpec(StrictModel):
    name: str
    """registered method name (``forgetkit methods``)"""
    label: str | None = None
    """name in reports (default: method name); lets one method appear with two settings"""
    options: dict[str, Any] = Field(default_factory=dict)
    """hyper-parameters of the method"""
    weightings: list[str] | None = None
    """weightings to combine with (default: the experiment's ``weightings``)"""
    weighting_options: dict[str, dict[str, Any]] = Field(default_factory=dict)
    """options per weighting name"""
    recipe: str | None = None
    """the tuned recipe the options come from (set by ``--recipe``); reports cite it"""

    @property
    def display(self) -> str:
        return self.label or self.name


class MetricSpec(StrictModel):
    deviation_tau: float = Field(0.05, ge=0)
    """threshold τ of FaLW's unlearning deviation"""
    groups: Literal["thirds", "oltr"] = "thirds"
    """head/mid/tail grouping scheme"""
    extra: list[str] = Field(default_factory=list)
    """additional evaluators by name (e.g. class-unlearning attacks)"""
    extra_options: dict[str, Any] = Field(default_factory=dict)
    audit: bool = False
    """also run the retrain-free deletion audit on every row (``forgetkit.audit``: forget set vs the
    held-out split) and write its report under ``<out>/audits/``"""


class ExperimentConfig(StrictModel):
    name: str
    """experiment name; results of different experiments never share a directory"""
    experiment_type: Literal["forget"] = "forget"
    dataset: str = "fashion_mnist"
    data_dir: str | None = None
    train_size: int | None = Field(None, ge=10)
    """stratified subsample of the training split (None = all)"""
    test_size: int | None = Field(None, ge=10)
    heldout_fraction: float = Field(0.1, ge=0, lt=1)
    """per-class fraction of train kept apart as unseen data (FaLW's validation set)"""
    model: ModelSpec = Field(default_factory=ModelSpec)
    train: TrainRecipe = Field(default_factory=TrainRecipe)
    """recipe of the original and retrained models (:class:`forgetkit.train.TrainRecipe`: every
    optimiser field of the engine, validated there)"""
    requests: list[RequestSpec]
    methods: list[MethodSpec]
    weightings: list[str] = Field(default_factory=lambda: ["uniform"])
    seeds: list[int] = Field(default_factory=lambda: [0])
    device: Literal["auto", "cpu", "cuda"] = "auto"
    metrics: MetricSpec = Field(default_factory=MetricSpec)
    cache_dir: str | None = None
    """model cache (default: ``.forgetkit-cache`` beside the output)"""
    smoke: bool = False
    """set by ``--smoke``: data and budgets were shrunk; reports mark every number as not a result"""
    threads: int | None = Field(None, ge=1)
    """torch threads per worker (default: OMP_NUM_THREADS, else 1 — measured fastest on CPU for the
    small models here, see docs/results/performance.md); results depend on it, so every row records it"""
    progress: Literal["bars", "metrics"] = Field("bars", exclude=True)
    """what ``forgetkit run`` shows: bars, or metrics (also a line per unlearning epoch with forget and
    retain accuracy; ``--progress`` overrides it); display only, so left out of cell keys and dumps"""

    @field_validator("requests", "methods", "seeds")
    @classmethod
    def _non_empty(cls, v, info):
        if not v:
            raise ValueError(f"'{info.field_name}' must not be empty")
        return v

    @model_validator(mode="after")
    def _request_options(self):
        for i, spec in enumerate(self.requests):
            spec.check_options(f"requests.{i}")
        return self


SMOKE = {"train_size": 600, "test_size": 300, "train_epochs": 1, "requests": 2}


def apply_overrides(raw: dict, sets: list[str]) -> dict:
    """``key.sub=value`` overrides (value parsed as YAML, numbers as in a config file), e.g.
    ``--set train.epochs=3``; a path that does not exist in the config is an error naming it."""
    raw = copy.deepcopy(raw)
    for item in sets:
        if "=" not in item:
            raise ValueError(f"--set expects key=value, got {item!r}")
        key, text = item.split("=", 1)
        try:
            value = yaml_load(text)
        except (yaml.YAMLError, DuplicateKeyError) as e:
            raise ValueError(f"--set {key}: the value {text!r} is not valid YAML: {e}") from None
        _set_path(raw, key, value)
    return raw


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


def smoke(raw: dict) -> dict:
    """Shrink data, epochs, iterations, seeds (first) and reported requests (first two, plus the
    first class request if they hold none) so any preset runs in about a minute on CPU: a check that
    it works, not a result."""
    raw = copy.deepcopy(raw)
    raw["train_size"] = min(raw.get("train_size") or SMOKE["train_size"], SMOKE["train_size"])
    raw["test_size"] = min(raw.get("test_size") or SMOKE["test_size"], SMOKE["test_size"])
    train = raw.setdefault("train", {})
    train["epochs"] = min(train.get("epochs", 20), SMOKE["train_epochs"])
    raw["seeds"] = (raw.get("seeds") or [0])[:1]
    reported = [r for r in raw.get("requests", []) if r.get("role", "report") == "report"]
    others = [r for r in raw.get("requests", []) if r.get("role", "report") != "report"]
    kept = reported[:SMOKE["requests"]]
    if not any(r.get("kind") == "class" for r in kept):  # class-only methods and evaluators need one
        kept += [r for r in reported if r.get("kind") == "class"][:1]
    raw["requests"] = kept + others
    from ..methods import METHODS
    from ..metrics.evaluators import EVALUATORS

    for m in raw.get("methods", []):  # each method declares its own caps (Method.smoke_caps)
        if m.get("name") in METHODS:
            m["options"] = METHODS.get(m["name"]).smoke_options(m.get("options") or {})
    metrics = raw.setdefault("metrics", {})
    extra = metrics.get("extra_options", {})
    for name in metrics.get("extra", []):  # and each evaluator how its shadows/references shrink
        if name in EVALUATORS:
            extra[name] = EVALUATORS.get(name).smoke_options(extra.get(name) or {})
    if extra:
        metrics["extra_options"] = extra
    raw["smoke"] = True
    return raw


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
    return yaml.load(text, Loader=_ConfigLoader)  # noqa: S506  _ConfigLoader is a SafeLoader


def load_raw(path: str | Path) -> dict:
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"config file {p} does not exist")
    try:
        raw = yaml_load(p.read_text())
    except DuplicateKeyError as e:
        raise ValueError(f"config {p}: {e}") from None
    except yaml.YAMLError as e:
        raise ValueError(f"config {p} is not valid YAML: {e}") from None
    if not isinstance(raw, dict):
        raise ValueError(f"config {p} must be a mapping of fields, got {type(raw).__name__}")
    return raw


def parse_config(raw: dict) -> ExperimentConfig:
    """Validate the schema, then every component's options (:func:`check_components`), then give
    same-named method entries distinct labels; errors name the field (``requests.0.ratio: ...``)."""
    cfg = validate_schema(ExperimentConfig, raw)
    check_components(cfg)
    distinct_labels(cfg)
    return cfg


def check_components(cfg: ExperimentConfig) -> None:
    """Names and options of methods, weightings, the model and evaluators, against what each
    declares (fields, types, and the component's own range checks); nothing is trained or written."""
    from ..methods import METHODS
    from ..metrics.evaluators import EVALUATORS
    from ..models import MODELS
    from ..options import suggestion, validate_options
    from ..unlearn.weightings import WEIGHTINGS

    for w in cfg.weightings:
        WEIGHTINGS.get(w)
    for i, spec in enumerate(cfg.methods):
        cls = METHODS.get(spec.name)
        validate_options(cls, spec.options, f"methods.{i}.options")
        for w in spec.weightings or []:
            WEIGHTINGS.get(w)
            if w != "uniform" and not cls.supports_weighting:
                raise ValueError(f"methods.{i}.weightings: method {spec.name!r} has no per-sample forget "
                                 f"loss, so it cannot take weighting {w!r}; remove it")
        used = spec.weightings if spec.weightings is not None else cfg.weightings
        for w, opts in spec.weighting_options.items():
            where = f"methods.{i}.weighting_options.{w}"
            if w not in WEIGHTINGS:
                raise ValueError(f"{where}: unknown weighting {w!r}{suggestion(w, WEIGHTINGS.names())}; "
                                 f"known: {', '.join(WEIGHTINGS.names())}")
            if w not in used:
                raise ValueError(f"{where}: weighting {w!r} is not among this method's weightings {used}, "
                                 "so these options would be ignored; add it to weightings or remove them")
            validate_options(WEIGHTINGS.get(w), opts, where)
    validate_options(MODELS.get(cfg.model.name), cfg.model.options, "model.options")
    for name in cfg.metrics.extra:
        EVALUATORS.get(name)
    for name, opts in cfg.metrics.extra_options.items():
        where = f"metrics.extra_options.{name}"
        if name not in cfg.metrics.extra:
            raise ValueError(f"{where}: {name!r} is not in metrics.extra {cfg.metrics.extra}, so these "
                             "options would be ignored; add it to metrics.extra or remove them")
        validate_options(EVALUATORS.get(name), opts, where)


def distinct_labels(cfg: ExperimentConfig) -> None:
    """Unlabelled method entries whose rows would carry one name (the label, else the paper's name
    of the method) get labels from the options that set them apart (``GA (lr=1e-05)`` and
    ``GA (lr=0.005)``), so two settings never merge into one row.

    Entries given the same explicit ``label`` are kept as one row on purpose (e.g. TRW-2R's layer
    draws, averaged); an entry repeating another exactly, or labels that still collide, are errors.
    """
    groups: dict[str, list[int]] = {}
    auto: set[int] = set()
    for i in range(len(cfg.methods)):
        groups.setdefault(_shown(cfg, i), []).append(i)
    for shown, members in groups.items():
        if len(members) < 2:
            continue
        seen: dict[str, int] = {}
        for i in members:
            sig = json.dumps(_settings(cfg, i), sort_keys=True, default=str)
            if sig in seen:
                raise ValueError(f"methods.{i} repeats methods.{seen[sig]} ({shown!r} with the same "
                                 "options): its rows would be the same cells; remove one")
            seen[sig] = i
        unlabelled = [i for i in members if cfg.methods[i].label is None]
        settings = {i: _settings(cfg, i) for i in members}
        keys = sorted({k for s in settings.values() for k in s})
        differing = [k for k in keys if len({json.dumps(s.get(k), sort_keys=True, default=str)
                                             for s in settings.values()}) > 1]
        for i in unlabelled:
            parts = ", ".join(f"{k}={_fmt(settings[i].get(k))}" for k in differing)
            cfg.methods[i].label = f"{shown} ({parts})"
            auto.add(i)
    final: dict[str, list[int]] = {}
    for i in range(len(cfg.methods)):
        final.setdefault(_shown(cfg, i), []).append(i)
    for label, members in final.items():
        if len(members) > 1 and (auto & set(members) or len({cfg.methods[i].name for i in members}) > 1):
            raise ValueError(f"methods.{members[1]}.label: {label!r} is also the label of methods.{members[0]}; "
                             "give each entry its own label")


def _shown(cfg: ExperimentConfig, i: int) -> str:
    """The name entry ``i``'s rows carry: its label, else the method's name as its paper writes it."""
    from ..methods import METHODS

    spec = cfg.methods[i]
    return spec.label or getattr(METHODS.get(spec.name), "paper_name", None) or spec.name


def _settings(cfg: ExperimentConfig, i: int) -> dict:
    """What defines method entry ``i`` apart from its label: options with the defaults filled in,
    its weightings and their options (``falw.tau``)."""
    from ..methods import METHODS

    spec = cfg.methods[i]
    defaults = {f.name: f.default for f in dataclasses.fields(METHODS.get(spec.name))
                if f.init and f.default is not dataclasses.MISSING}
    out = {"name": spec.name, **defaults, **spec.options,
           "weightings": spec.weightings if spec.weightings is not None else cfg.weightings}
    for w, opts in spec.weighting_options.items():
        out.update({f"{w}.{k}": v for k, v in opts.items()})
    return out


def _fmt(v) -> str:
    return f"{v:g}" if isinstance(v, float) else json.dumps(v) if isinstance(v, (list, dict)) else str(v)
