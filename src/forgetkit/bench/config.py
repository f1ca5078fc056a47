"""Experiment configs: YAML validated into typed objects; a bad field is an error naming it."""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ModelSpec(_Strict):
    name: str = "cnn"
    """architecture in ``forgetkit.models.MODELS``"""
    options: dict[str, Any] = Field(default_factory=dict)
    """keyword options of the architecture (e.g. width)"""


class TrainSpec(_Strict):
    epochs: int = Field(20, ge=1)
    lr: float = Field(0.05, gt=0)
    batch_size: int = Field(128, ge=1)
    momentum: float = Field(0.9, ge=0, lt=1)
    weight_decay: float = Field(5e-4, ge=0)
    schedule: Literal["cosine", "step", "constant"] = "cosine"
    milestones: list[int] = Field(default_factory=list)
    gamma: float = Field(0.1, gt=0)


class RequestSpec(_Strict):
    kind: Literal["random", "class", "longtail"]
    fraction: float | None = Field(None, gt=0, lt=1)
    """random: fraction of the training set"""
    classes: list[int] | None = None
    """class: the classes to forget"""
    ratio: float | None = Field(None, gt=0, le=1)
    """longtail: forget ratio of the training set"""
    gamma: float | None = Field(None, ge=0)
    """longtail: power-law exponent (0 = balanced)"""
    natural_order: bool = False
    """longtail: rank classes by index instead of a seeded permutation"""
    keep_one: bool = False
    """longtail: never remove a class entirely"""
    role: Literal["report", "validation"] = "report"
    """validation requests are for tuning only and never reported"""

    @model_validator(mode="after")
    def _fields_for_kind(self):
        need = {"random": ["fraction"], "class": ["classes"], "longtail": ["ratio", "gamma"]}[self.kind]
        for f in need:
            if getattr(self, f) is None:
                raise ValueError(f"a {self.kind} request needs the field '{f}'")
        return self


class MethodSpec(_Strict):
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

    @property
    def display(self) -> str:
        return self.label or self.name


class MetricSpec(_Strict):
    deviation_tau: float = Field(0.05, ge=0)
    """threshold τ of FaLW's unlearning deviation"""
    groups: Literal["thirds", "oltr"] = "thirds"
    """head/mid/tail grouping scheme"""
    extra: list[str] = Field(default_factory=list)
    """additional evaluators by name (e.g. class-unlearning attacks)"""
    extra_options: dict[str, Any] = Field(default_factory=dict)


class ExperimentConfig(_Strict):
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
    train: TrainSpec = Field(default_factory=TrainSpec)
    requests: list[RequestSpec]
    methods: list[MethodSpec]
    weightings: list[str] = Field(default_factory=lambda: ["uniform"])
    seeds: list[int] = Field(default_factory=lambda: [0])
    device: Literal["auto", "cpu", "cuda"] = "auto"
    metrics: MetricSpec = Field(default_factory=MetricSpec)
    cache_dir: str | None = None
    """model cache (default: ``.forgetkit-cache`` beside the output)"""

    @field_validator("requests", "methods", "seeds")
    @classmethod
    def _non_empty(cls, v, info):
        if not v:
            raise ValueError(f"'{info.field_name}' must not be empty")
        return v


SMOKE = {"train_size": 1500, "test_size": 500, "train_epochs": 2, "requests": 3, "shadows": 2}
SMOKE_METHOD_CAPS = {"epochs": 1, "n_iters": 30, "num_adv_images": 1, "pgd_iters": 10}
"""method options capped by ``--smoke`` wherever a method has them (L2UL's attack is 2,000 passes
per forget sample at its defaults: without the last two caps it dominates a class-request smoke run)"""


def apply_overrides(raw: dict, sets: list[str]) -> dict:
    """``key.sub=value`` overrides (value parsed as YAML), e.g. ``--set train.epochs=3``."""
    raw = copy.deepcopy(raw)
    for item in sets:
        if "=" not in item:
            raise ValueError(f"--set expects key=value, got {item!r}")
        key, value = item.split("=", 1)
        node = raw
        parts = key.split(".")
        for p in parts[:-1]:
            if p.isdigit() and isinstance(node, list):
                node = node[int(p)]
            else:
                node = node.setdefault(p, {})
        last = parts[-1]
        if isinstance(node, list) and last.isdigit():
            node[int(last)] = yaml.safe_load(value)
        else:
            node[last] = yaml.safe_load(value)
    return raw


def smoke(raw: dict) -> dict:
    """Shrink data, epochs, iterations, seeds (first) and reported requests (first three) so any
    preset runs in about a minute on CPU: a check that it works, not a result."""
    raw = copy.deepcopy(raw)
    raw["train_size"] = min(raw.get("train_size") or SMOKE["train_size"], SMOKE["train_size"])
    raw["test_size"] = min(raw.get("test_size") or SMOKE["test_size"], SMOKE["test_size"])
    raw.setdefault("train", {})["epochs"] = min(raw["train"].get("epochs", 20), SMOKE["train_epochs"])
    raw["seeds"] = (raw.get("seeds") or [0])[:1]
    reported = [r for r in raw.get("requests", []) if r.get("role", "report") == "report"]
    others = [r for r in raw.get("requests", []) if r.get("role", "report") != "report"]
    raw["requests"] = reported[:SMOKE["requests"]] + others
    from ..methods import METHODS

    for m in raw.get("methods", []):
        fields = METHODS.get(m["name"]).__dataclass_fields__ if m.get("name") in METHODS else {}
        for name, cap in SMOKE_METHOD_CAPS.items():
            if name in fields:
                opts = m.setdefault("options", {})
                opts[name] = min(opts.get(name, cap), cap)
    extra = raw.get("metrics", {}).get("extra_options", {})
    for options in extra.values():  # evaluators' own shadow/reference models shrink too
        if isinstance(options, dict):
            if isinstance(options.get("train"), dict):
                options["train"] = {**options["train"], "epochs": min(options["train"].get("epochs", 20), SMOKE["train_epochs"])}
            if isinstance(options.get("shadows"), int):
                options["shadows"] = min(options["shadows"], SMOKE["shadows"])
    return raw


def load_raw(path: str | Path) -> dict:
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"config file {p} does not exist")
    try:
        raw = yaml.safe_load(p.read_text())
    except yaml.YAMLError as e:
        raise ValueError(f"config {p} is not valid YAML: {e}") from None
    if not isinstance(raw, dict):
        raise ValueError(f"config {p} must be a mapping of fields, got {type(raw).__name__}")
    return raw


def parse_config(raw: dict) -> ExperimentConfig:
    """Validate; errors name the field (``requests.0.ratio: ...``)."""
    try:
        return ExperimentConfig.model_validate(raw)
    except ValidationError as e:
        lines = []
        for err in e.errors():
            loc = ".".join(str(x) for x in err["loc"]) or "(config)"
            lines.append(f"{loc}: {err['msg']}")
        raise ValueError("invalid config:\n  " + "\n  ".join(lines)) from None
