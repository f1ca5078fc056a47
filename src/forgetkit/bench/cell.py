"""One cell: unlearn (or take a reference model), run the evaluators, return its store row.

A row holds raw measurements only — metrics of this one model and the per-sample arrays derived
measures need. Everything against the retrained reference (gaps, Avg. Gap, ΔFA, deviation) is
computed afterwards from the store by :mod:`forgetkit.bench.derived`, so no cell waits for or reads
another cell's row, and cells run in any order on any executor.
"""
from __future__ import annotations

import dataclasses
import time
import traceback

import numpy as np

from ..methods import build_method, check_requirements
from ..metrics.evaluators import EVALUATORS, CellView
from ..unlearn.engine import DivergenceError
from ..unlearn.weightings import build_weighting
from .grid import ORIGINAL, Cell
from .workspace import Workspace, provenance


def evaluator_options(cfg, request_kind: str | None = None) -> list[tuple[str, dict]]:
    """(name, options) of every evaluator a cell runs: ``standard`` (FA/RA/TA/MIA) first, then ``metrics.extra``.

    With ``request_kind``, only those that apply to it: whole-class evaluators score class requests only.
    """
    extra = [(name, dict(cfg.metrics.extra_options.get(name, {}))) for name in cfg.metrics.extra
             if request_kind in (None, "class") or not EVALUATORS.get(name).class_requests_only]
    return [("standard", {"groups": cfg.metrics.groups})] + extra


def extra_references(cfg, request_kind: str | None = None) -> int:
    """Extra retrained references the evaluators that score a request declare they use (the most of any)."""
    return max((EVALUATORS.get(n).references_for(o) for n, o in evaluator_options(cfg, request_kind)), default=0)


def _method_and_weighting(cfg, cell: Cell):
    spec = cfg.methods[cell.method]
    return (build_method(spec.name, **spec.options),
            build_weighting(cell.weighting, **spec.weighting_options.get(cell.weighting, {})))


def method_params(cfg, cell: Cell) -> dict:
    """The hyper-parameters a method cell runs with, as its row stores them: the method's options
    resolved over its module defaults, and its weighting."""
    spec = cfg.methods[cell.method]
    return {"method": spec.name, **build_method(spec.name, **spec.options).params(), "weighting": cell.weighting,
            "weighting_options": spec.weighting_options.get(cell.weighting, {})}


def execute_cell(ws: Workspace, cell: Cell, progress=None) -> dict:
    """Run one cell and return its store row (status ok or failed; a method's failure never raises)."""
    cfg = ws.cfg
    req = ws.request(cell.seed, cell.request)
    row = {"key": cell.key, "experiment": cfg.name, "method": cell.label, "weighting": cell.weighting,
           "request": cfg.requests[cell.request].name or req.name, "seed": cell.seed, "provenance": provenance(ws, cell.seed),
           "params": {"base_label": cell.base_label, "request_kind": req.kind}, "error": None}
    trained_before = ws.models_trained
    try:
        original, orig_seconds = ws.original(cell.seed)
        retrained, retrain_seconds = ws.retrained(cell.seed, cell.request)
        unlearn_fn = None
        if cell.is_reference:
            model, seconds = (original, orig_seconds) if cell.reference == ORIGINAL else (retrained, retrain_seconds)
            info = {}
        else:
            spec = cfg.methods[cell.method]
            method, weighting = _method_and_weighting(cfg, cell)
            ctx = ws.context(cell.seed, cell.request)
            check_requirements(method, ctx, weighting)
            row["params"].update(method_params(cfg, cell))
            if spec.recipe:
                row["params"]["recipe"] = spec.recipe
            start = time.perf_counter()
            model, info = method.unlearn(original, ctx, weighting, progress)
            seconds = time.perf_counter() - start

            def unlearn_fn(m, _ctx=ctx):
                fresh, w = _method_and_weighting(cfg, cell)
                return fresh.unlearn(m, dataclasses.replace(_ctx, original=m), w)[0]
        forget, retain = ws.splits(cell.seed, cell.request)
        view = CellView(model, original, retrained, ws.bundle, forget, retain, ws.bundle.test, req, cell.seed,
                        ws.device, lambda m: ws.references(cell.seed, cell.request, m), unlearn_fn)
        metrics = {"time_s": seconds, "retrain_time_s": retrain_seconds}
        artifacts: dict = {}
        for name, options in evaluator_options(cfg, cfg.requests[cell.request].kind):
            for k, v in EVALUATORS.get(name)(view, **options).items():
                if isinstance(v, (int, float, str, np.floating, np.integer)) and not isinstance(v, bool):
                    metrics[k] = v.item() if isinstance(v, np.generic) else v
                else:
                    artifacts[k] = v.tolist() if isinstance(v, np.ndarray) else v
        for k in ("history", "stopped_at"):
            if info.get(k) is not None:
                artifacts[k] = info[k]
        if cfg.metrics.audit:
            metrics.update(_audit(ws, cell, model, None if cell.reference == ORIGINAL else original, seconds,
                                  row["params"], artifacts, metrics.get("RA")))
        row["params"]["test_set"] = "without the forgotten classes" if req.kind == "class" else "whole"
        _check_finite(metrics)
        row["provenance"]["models_trained"] = ws.models_trained - trained_before
        row.update(status="ok", metrics=metrics, artifacts=artifacts)
    except (DivergenceError, FloatingPointError, ValueError) as e:
        row.update(status="failed", metrics={}, artifacts={}, error=f"{type(e).__name__}: {e}")
    except Exception as e:  # noqa: BLE001  a crashed method must not stop the sweep
        row.update(status="failed", metrics={}, artifacts={},
                   error=f"{type(e).__name__}: {e}\n{traceback.format_exc(limit=3)}")
    return row


def _audit(ws: Workspace, cell: Cell, model, original, seconds: float, params: dict, artifacts: dict,
           retain_accuracy: float | None) -> dict:
    """The deletion audit of this row's model (forget set vs the never-trained held-out split): its
    data goes to the artifacts (the report step renders its page from them), its headline to the
    metrics. ``retain_accuracy``: the row's RA, and the original's once per request, so the audit
    does not run either model over the retain set again."""
    from ..audit import audit, encode_scores
    from ..audit.runs import headline, page_info

    req = ws.request(cell.seed, cell.request)
    forget, retain = ws.splits(cell.seed, cell.request)
    held = ws.pool(cell.seed)[1]
    if not len(held):
        raise ValueError("metrics.audit needs a held-out split: set heldout_fraction > 0")
    known = {} if retain_accuracy is None else {"after": retain_accuracy}
    if original is not None and known:
        known["before"] = ws.original_retain_accuracy(cell.seed, cell.request)
    result = audit(model, forget, held, original=original, retain=retain, test=ws.bundle.test,
                   num_classes=ws.bundle.num_classes, device=ws.device, seed=cell.seed,
                   forget_classes=req.classes if req.kind == "class" else (), retain_accuracy=known)
    artifacts["audit"] = result.to_dict()
    artifacts["audit_scores"] = encode_scores(result.scores["after"])  # re-audits and pages read these
    artifacts["audit_page"] = page_info(cell.label, req.name, cell.seed, method_settings=dict(params),
                                        unlearn_seconds=seconds, class_names=ws.bundle.class_names,
                                        no_unlearning=cell.reference == ORIGINAL)
    out = headline(result)
    return out


def _check_finite(metrics: dict) -> None:
    for k, v in metrics.items():
        if isinstance(v, float) and not np.isfinite(v):
            raise FloatingPointError(f"metric {k} is {v}")
