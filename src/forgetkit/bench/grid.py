"""The grid of an experiment: which cells exist, their keys and the labels reports show.

A cell is one row of the result store: a method (or a reference model) × weighting × forget
request × seed. Its key is a hash of everything that defines it, so a re-run skips finished rows
and an edited config never mixes its rows with another's.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from ..data.requests import REQUEST_SHAPES
from ..methods import METHODS
from ..unlearn.weightings import WEIGHTINGS
from .config import LEGACY_REQUEST_FIELDS, ExperimentConfig, MethodSpec, RequestSpec

ORIGINAL, RETRAIN = "Original", "Retrain"
REFERENCES = (ORIGINAL, RETRAIN)
"""the two reference rows of every (request, seed): the model before unlearning, and the gold standard"""


@dataclass(frozen=True)
class Cell:
    """One row of the result store."""

    seed: int
    request: int
    """index into ``cfg.requests``"""
    method: int | None
    """index into ``cfg.methods``; None for a reference row"""
    reference: str | None
    """``Original`` or ``Retrain`` for a reference row, else None"""
    weighting: str
    label: str
    """the row's name in reports (the papers' spelling: SalUn, NegGrad+, FaLW)"""
    base_label: str
    """the unweighted method's label (a weighted variant is paired with it)"""
    key: str

    @property
    def is_reference(self) -> bool:
        return self.reference is not None


def paper_name(method: str) -> str:
    """A method's name as its paper writes it (the registry key when it declares none)."""
    return METHODS.get(method).paper_name or method


def weighting_name(weighting: str) -> str:
    return WEIGHTINGS.get(weighting).paper_name or weighting


def weightings_for(cfg: ExperimentConfig, spec: MethodSpec) -> list[str]:
    """The weightings a method entry runs with (only ``uniform`` for a method without a per-sample loss)."""
    names = spec.weightings if spec.weightings is not None else cfg.weightings
    return names if METHODS.get(spec.name).supports_weighting else ["uniform"]


def cell_label(spec: MethodSpec, weighting: str, n_weightings: int) -> tuple[str, str]:
    """(label, base label). A config label names a single-weighting entry whole; otherwise the
    method's paper name, plus `` + <weighting>`` for a weighted variant — except RL with FaLW's
    weights, which its paper calls FaLW."""
    base = spec.label or paper_name(spec.name)
    if weighting == "uniform":
        return base, base
    if spec.label and n_weightings == 1:
        return spec.label, spec.label
    if spec.name == "rl" and weighting == "falw" and not spec.label:
        return "FaLW", base
    return f"{base} + {weighting_name(weighting)}", base


def applies(method: str, request_kind: str) -> bool:
    """A method that forgets whole classes only runs on class requests; every other one on all."""
    return request_kind == "class" or not METHODS.get(method).class_only


def request_key_fields(req: RequestSpec) -> dict:
    """What a request contributes to its cells' keys: its dump over the legacy fields, so a built-in
    shape's cells keep the keys they had before shapes had a registry."""
    return {**LEGACY_REQUEST_FIELDS, **req.model_dump()}


def row_request_kind(row: dict, specs: list[dict]) -> str | None:
    """The request shape of a stored row: ``params.request_kind``, which rows record; for a row
    stored before they did, the kind of the config's request of that name (``specs``: the
    ``requests`` of ``experiment.json``'s config), else the shape its own name starts with
    (``class3``, ``longtail-r0.3-g1``); None when none fits."""
    kind = (row.get("params") or {}).get("request_kind")
    if kind:
        return kind
    for spec in specs:
        if spec.get("name") == row["request"]:
            return spec.get("kind")
    return next((k for k in sorted(REQUEST_SHAPES.names(), key=len, reverse=True) if row["request"].startswith(k)),
                None)


def _hash(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:32]


def plan(cfg: ExperimentConfig, roles: tuple[str, ...] = ("report",)) -> list[Cell]:
    """Every cell of the grid for requests of the given roles (``validation`` ones are for tuning);
    a class-only method has cells on the class requests only."""
    base = cfg.model_dump(exclude={"methods", "requests", "seeds", "weightings", "cache_dir", "device",
                                   "threads"})
    cells = []
    for seed in cfg.seeds:
        for ri, req in enumerate(cfg.requests):
            if req.role not in roles:
                continue
            common = {"base": base, "seed": seed, "request": request_key_fields(req)}
            for ref in REFERENCES:
                cells.append(Cell(seed, ri, None, ref, "-", ref, ref, _hash({**common, "method": ref.lower()})))
            for mi, spec in enumerate(cfg.methods):
                if not applies(spec.name, req.kind):
                    continue
                ws = weightings_for(cfg, spec)
                for w in ws:
                    key = _hash({**common, "method": spec.model_dump(), "weighting": w,
                                 "weighting_options": spec.weighting_options.get(w, {})})
                    cells.append(Cell(seed, ri, mi, None, w, *cell_label(spec, w, len(ws)), key))
    return cells
