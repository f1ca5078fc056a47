"""Experiment configs: YAML validated into typed objects; a bad field is an error naming it."""
from __future__ import annotations

import dataclasses
import datetime
import json
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, ValidationError, field_validator, model_validator

from ..train import TrainRecipe
from .config_yaml import DuplicateKeyError, apply_overrides, load_raw, plain_values, yaml_load

__all__ = ["DuplicateKeyError", "ExperimentConfig", "MethodSpec", "MetricSpec", "ModelSpec", "RequestSpec",
           "apply_overrides", "load_raw", "parse_config", "smoke", "yaml_load"]


SEED_MAX = 2**32 - 1
"""the largest seed numpy's RandomState takes"""


def each_once(values: list, field: str) -> list:
    """``values`` unchanged, or a refusal naming the first one listed twice (a repeated seed or
    weighting would run the same cells twice and report them as one)."""
    for i, v in enumerate(values):
        if v in values[:i]:
            raise ValueError(f"{v!r} is listed twice in {field} {values}; give each once")
    return values


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
        raise ValueError("invalid config:\n  " + "\n  ".join(_error_line(err) for err in e.errors())) from None


def _error_line(err: dict) -> str:
    """``field: problem`` (a whole-config check's message names its own fields), and a value YAML
    turned into a boolean or a date says so (``name: no`` is False, not "no")."""
    where = ".".join(str(x) for x in err["loc"])
    msg = err["msg"].removeprefix("Value error, ")
    if err["type"] in ("string_type", "literal_error", "int_type", "float_type"):
        given = err.get("input")
        if isinstance(given, bool):
            msg += f" (YAML reads an unquoted yes/no/on/off/true/false as the boolean {given}: quote the value)"
        elif isinstance(given, datetime.date):
            msg += f" (YAML reads an unquoted {given} as a date: quote the value)"
    return f"{where}: {msg}" if where else msg


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

    @field_validator("weightings")
    @classmethod
    def _weightings(cls, v, info):
        if v is not None and not v:
            raise ValueError("must not be empty (leave it out for the experiment's weightings)")
        return v if v is None else each_once(v, info.field_name)

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

    @field_validator("extra")
    @classmethod
    def _extra_once(cls, v, info):
        return each_once(v, info.field_name)
    extra_options: dict[str, dict[str, Any]] = Field(default_factory=dict)
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
    seeds: list[Annotated[StrictInt, Field(ge=0, le=SEED_MAX)]] = Field(default_factory=lambda: [0])
    """seeds of the data split, the requests and the models (each once; numpy takes 0 .. 2**32 - 1)"""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    metrics: MetricSpec = Field(default_factory=MetricSpec)
    cache_dir: str | None = None
    """model cache (default: ``.forgetkit-cache`` beside the output)"""
    smoke: bool = False
    """set by ``--smoke``: data and budgets were shrunk; reports mark every number as not a result"""
    threads: int | None = Field(None, ge=1, le=1024)
    """torch threads per worker (default: OMP_NUM_THREADS, else 1 — measured fastest on CPU for the
    small models here, see docs/results/performance.md); results depend on it, so every row records it"""
    progress: Literal["bars", "metrics"] = Field("bars", exclude=True)
    """what ``forgetkit run`` shows: bars, or metrics (also a line per unlearning epoch with forget and
    retain accuracy; ``--progress`` overrides it); display only, so left out of cell keys and dumps"""

    @field_validator("requests", "methods", "seeds", "weightings")
    @classmethod
    def _non_empty(cls, v, info):
        if not v:
            raise ValueError(f"'{info.field_name}' must not be empty")
        return v

    @field_validator("seeds", "weightings")
    @classmethod
    def _each_once(cls, v, info):
        return each_once(v, info.field_name)

    @field_validator("name")
    @classmethod
    def _named(cls, name: str) -> str:
        if not name.strip():
            raise ValueError("must not be empty: results are kept per experiment name")
        return name

    @model_validator(mode="after")
    def _requests(self):
        """Each request's options, checked by its shape; no two requests alike or named alike (their
        rows would be one cell, or one row of the report)."""
        seen: dict[str, int] = {}
        names: dict[str, int] = {}
        for i, spec in enumerate(self.requests):
            spec.check_options(f"requests.{i}")
            dump = json.dumps(spec.model_dump(exclude={"name"}), sort_keys=True, default=str)
            if dump in seen and spec.name == self.requests[seen[dump]].name:
                raise ValueError(f"requests.{i} repeats requests.{seen[dump]}: its rows would be the same cells; "
                                 "remove one")
            seen.setdefault(dump, i)
            if spec.name is not None and spec.name in names:
                raise ValueError(f"requests.{i}.name: {spec.name!r} is also the name of requests.{names[spec.name]}; "
                                 "give each request its own name")
            names.setdefault(spec.name, i)
        return self


SMOKE = {"train_size": 600, "test_size": 300, "train_epochs": 1, "requests": 2}


def smoke(raw: dict) -> dict:
    """Shrink data, epochs, iterations, seeds (first) and reported requests (first two, plus the
    first class request if they hold none) so any preset runs in about a minute on CPU: a check that
    it works, not a result. The config is validated first (a broken one is refused naming the
    field) and what is shrunk is its validated form."""
    raw = validate_schema(ExperimentConfig, plain_values(raw, python=True)).model_dump(exclude_none=True)
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


def parse_config(raw: dict) -> ExperimentConfig:
    """Validate the schema, then every component's options (:func:`check_components`), then give
    same-named method entries distinct labels; errors name the field (``requests.0.ratio: ...``)."""
    cfg = validate_schema(ExperimentConfig, plain_values(raw, python=True))
    check_components(cfg)
    distinct_labels(cfg)
    return cfg


def check_components(cfg: ExperimentConfig) -> None:
    """Names of the dataset, methods, weightings, the model and evaluators (an unknown one names its
    field: ``methods.0.name: unknown method 'x'``), and their options against what each declares
    (fields, types, and the component's own range checks); nothing is loaded, trained or written."""
    from ..data import DATASETS
    from ..methods import METHODS
    from ..metrics.evaluators import EVALUATORS
    from ..models import MODELS
    from ..options import suggestion, validate_options
    from ..unlearn.weightings import WEIGHTINGS

    _get(DATASETS, cfg.dataset, "dataset")
    for k, w in enumerate(cfg.weightings):
        _get(WEIGHTINGS, w, f"weightings.{k}")
    for i, spec in enumerate(cfg.methods):
        cls = _get(METHODS, spec.name, f"methods.{i}.name")
        validate_options(cls, spec.options, f"methods.{i}.options")
        for k, w in enumerate(spec.weightings or []):
            _get(WEIGHTINGS, w, f"methods.{i}.weightings.{k}")
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
    validate_options(_get(MODELS, cfg.model.name, "model.name"), cfg.model.options, "model.options")
    for k, name in enumerate(cfg.metrics.extra):
        _get(EVALUATORS, name, f"metrics.extra.{k}")
    for name, opts in cfg.metrics.extra_options.items():
        where = f"metrics.extra_options.{name}"
        if name not in cfg.metrics.extra:
            raise ValueError(f"{where}: {name!r} is not in metrics.extra {cfg.metrics.extra}, so these "
                             "options would be ignored; add it to metrics.extra or remove them")
        validate_options(EVALUATORS.get(name), opts, where)


def _get(registry, name: str, where: str):
    """``registry.get(name)``, its ``KeyError`` (unknown name, the known ones) prefixed with the field."""
    try:
        return registry.get(name)
    except KeyError as e:
        raise KeyError(f"{where}: {e.args[0]}") from None


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
