"""The soft-weighting experiment (``experiment_type: soft-weighting``): grid, store rows, report.

Grid: datasets × models × unlearners × {hard, soft} × seeds, for one task (dp, eop or
robustness). Per (dataset, model, seed) the head is trained and the influences computed once; each
(unlearner, weighting) cell is one row of the shared :class:`~forgetkit.bench.store.ResultStore`,
keyed by a SHA-256 of everything that defines it, so a re-run skips finished cells and retries
failed ones. Defaults follow the reference scripts ``SEC-5-2-0-1.py`` / ``SEC-5-2-0-2.py`` of
``XinbaoQiao/Soft-Weighted-Machine-Unlearning`` (k = 0.2, soft-2.3, 30 fine-tuning epochs).
"""
from __future__ import annotations

import hashlib
import json
import math
import pathlib
import platform
import subprocess
import time
from typing import Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field

from ..bench.store import ResultStore
from ..data import DATASETS, load_dataset
from .core import LinearInfluence, as_tensor
from .features import embed, train_feature_extractor
from .metrics import evaluate
from .targets import adversarial_points, make_task, utility_loss, value_and_grad
from .unlearners import (fit_logistic, influence_update, soft_gradient_ascent, weighted_finetune,
                         weighted_retrain)
from .weights import compute_weights

EXPERIMENT_TYPE = "soft-weighting"
TASK_METRIC = {"dp": "dp", "eop": "eop", "robustness": "robust_accuracy"}
HIGHER_IS_BETTER = {"dp": False, "eop": False, "robust_accuracy": True}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class L2Config(_Strict):
    """L2 coefficient of the summed-loss objective per model (reference: LR C = 1/l2_reg;
    NN head liblinear with l2 = 1e-4)."""
    logreg: float = Field(1.0, ge=0.0)
    mlp: float = Field(1e-4, ge=0.0)


class MLPConfig(_Strict):
    """Feature extractor of the "NN last layer" model (trained on a small seeded fraction)."""
    feature_fraction: float = Field(0.01, gt=0.0, lt=1.0)
    min_feature_rows: int = Field(100, ge=10)
    lr: float = 1e-2
    max_iter: int = Field(2000, ge=1)
    patience: int = Field(10, ge=1)


class QPConfig(_Strict):
    """Options of the cvxpy soft scheme (``soft_scheme: qp``); see :func:`weights.qp_weights`."""
    task_weight: float = 0.0
    utility_tolerance: float = Field(0.0, ge=0.0)
    lower: float | None = None
    upper: float | None = None
    solver: Literal["CLARABEL", "OSQP"] = "CLARABEL"


class FinetuneConfig(_Strict):
    lr: float = 1e-3
    weight_decay: float = 1e-3
    epochs: int = Field(30, ge=1)


class GAConfig(_Strict):
    lr: float = 1e-3
    epochs: int = Field(30, ge=1)


class SoftWeightingConfig(_Strict):
    """Validated YAML of a soft-weighting run; unknown fields are errors naming the field."""
    experiment_type: Literal["soft-weighting"] = EXPERIMENT_TYPE
    name: str = "soft-weighting"
    task: Literal["dp", "eop", "robustness"]
    datasets: list[str] = Field(min_length=1)
    models: list[Literal["logreg", "mlp"]] = Field(default_factory=lambda: ["logreg", "mlp"])
    unlearners: list[Literal["influence", "retrain", "finetune", "ga"]] = Field(
        default_factory=lambda: ["influence", "retrain", "finetune", "ga"])
    weightings: list[Literal["hard", "soft"]] = Field(default_factory=lambda: ["hard", "soft"])
    soft_scheme: Literal["soft-2.0", "soft-2.1", "soft-2.2", "soft-2.3", "qp"] = "soft-2.3"
    seeds: list[int] = Field(default_factory=lambda: [0, 1, 2], min_length=1)
    hard_fraction: float = Field(0.2, ge=0.0, le=1.0)
    target_fraction: float = Field(1.0, gt=0.0)
    lam: float = Field(1.0, gt=0.0)
    l2_reg: L2Config = Field(default_factory=L2Config)
    influence_method: Literal["exact", "cg"] = "exact"
    damping: float = Field(0.0, ge=0.0)
    validation_fraction: float = Field(0.5, gt=0.0, lt=1.0)
    max_train: int | None = Field(None, ge=50)
    overshoot: float = Field(1.3, gt=1.0)
    data_dir: str | None = None
    mlp: MLPConfig = Field(default_factory=MLPConfig)
    qp: QPConfig = Field(default_factory=QPConfig)
    finetune: FinetuneConfig = Field(default_factory=FinetuneConfig)
    ga: GAConfig = Field(default_factory=GAConfig)

    def model_post_init(self, _):
        unknown = [d for d in self.datasets if d not in DATASETS]
        if unknown:
            raise ValueError(f"datasets: unknown {unknown}; known: {DATASETS.names()}")


SMOKE = {"max_train": 1500, "max_test": 1000, "mlp_max_iter": 300}
"""What ``smoke=True`` shrinks: training rows, test rows (before the validation split), MLP iterations."""


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                             cwd=pathlib.Path(__file__).parent, timeout=10)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def cell_key(cfg: SoftWeightingConfig, smoke: bool, dataset: str, model: str, unlearner: str,
             weighting: str, seed: int) -> str:
    """SHA-256 of the cell's coordinates and every hyper-parameter (grid lists excluded)."""
    hyper = cfg.model_dump(exclude={"datasets", "models", "unlearners", "weightings", "seeds",
                                    "data_dir"})
    payload = dict(hyper=hyper, smoke=smoke, dataset=dataset, model=model, unlearner=unlearner,
                   weighting=weighting, seed=seed)
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def _subsample(n: int, limit: int | None, rng: np.random.RandomState) -> np.ndarray:
    return np.arange(n) if limit is None or n <= limit else np.sort(rng.choice(n, limit, replace=False))


def prepare(cfg: SoftWeightingConfig, bundle, model: str, seed: int, smoke: bool) -> dict:
    """Splits, features, the trained head θ̂, influences on task and utility, and 'before' metrics."""
    rng = np.random.RandomState(seed)
    tr = _subsample(len(bundle.train), SMOKE["max_train"] if smoke else cfg.max_train, rng)
    te = _subsample(len(bundle.test), SMOKE["max_test"] if smoke else None, rng)
    perm = rng.permutation(te)
    n_val = int(round(cfg.validation_fraction * len(perm)))
    val, test = np.sort(perm[:n_val]), np.sort(perm[n_val:])
    x_tr, y_tr = bundle.train.x[tr].double().numpy(), bundle.train.y[tr].numpy()
    x_val, x_te = bundle.test.x[val].double().numpy(), bundle.test.x[test].double().numpy()
    if model == "mlp":
        n_feat = max(cfg.mlp.min_feature_rows, int(round(cfg.mlp.feature_fraction * len(tr))))
        order = rng.permutation(len(tr))
        feat, pool = order[:n_feat], np.sort(order[n_feat:])
        extractor = train_feature_extractor(
            x_tr[feat], y_tr[feat], seed, lr=cfg.mlp.lr, patience=cfg.mlp.patience,
            max_iter=SMOKE["mlp_max_iter"] if smoke else cfg.mlp.max_iter)
        x_tr, y_tr = embed(extractor, x_tr[pool]), y_tr[pool]
        x_val, x_te = embed(extractor, x_val), embed(extractor, x_te)
    l2 = getattr(cfg.l2_reg, model)
    theta = fit_logistic(x_tr, y_tr, l2)
    infl = LinearInfluence(l2, method=cfg.influence_method, damping=cfg.damping).fit(theta, x_tr, y_tr)
    y_val, s_val = bundle.test.y[val].numpy(), bundle.test.sensitive[val].numpy()
    task_fn = make_task(cfg.task, theta, x_val, y_val, s_val, cfg.overshoot)
    util_fn = lambda t: utility_loss(t, as_tensor(x_val), as_tensor(y_val))  # noqa: E731
    f0, grad_f = value_and_grad(task_fn, theta)
    u0, grad_u = value_and_grad(util_fn, theta)
    y_te, s_te = bundle.test.y[test].numpy(), bundle.test.sensitive[test].numpy()
    x_adv_te = adversarial_points(theta, x_te, cfg.overshoot).numpy()
    return dict(theta=theta, infl=infl, x=x_tr, y=y_tr, task_fn=task_fn, util_fn=util_fn, f0=f0,
                u0=u0, infl_task=infl.influence(grad_f), infl_util=infl.influence(grad_u),
                test=(x_te, y_te, s_te, x_adv_te), before=evaluate(theta, x_te, y_te, s_te, x_adv_te),
                sizes=dict(n_train=len(y_tr), n_val=len(val), n_test=len(test),
                           n_features=x_tr.shape[1]), damping=infl.damping_)


def unlearn(cfg: SoftWeightingConfig, ctx: dict, unlearner: str, eps: np.ndarray) -> np.ndarray:
    """Apply one weighted unlearner to the prepared head."""
    if unlearner == "influence":
        return influence_update(ctx["infl"], eps)
    if unlearner == "retrain":
        return weighted_retrain(ctx["x"], ctx["y"], eps, ctx["infl"].l2_reg)
    if unlearner == "finetune":
        return weighted_finetune(ctx["theta"], ctx["x"], ctx["y"], eps, **cfg.finetune.model_dump())
    if unlearner == "ga":
        return soft_gradient_ascent(ctx["theta"], ctx["x"], ctx["y"], eps, **cfg.ga.model_dump())
    raise ValueError(f"unknown unlearner {unlearner!r}")


def run_cell(cfg: SoftWeightingConfig, ctx: dict, unlearner: str, weighting: str) -> tuple[dict, dict]:
    """Weights, unlearning, metrics; returns (metrics, params) of one row."""
    start = time.perf_counter()
    scheme = "hard" if weighting == "hard" else cfg.soft_scheme
    eps = compute_weights(scheme, ctx["infl_task"], ctx["infl_util"], ctx["f0"],
                          hard_fraction=cfg.hard_fraction, target_fraction=cfg.target_fraction,
                          lam=cfg.lam, **(cfg.qp.model_dump() if scheme == "qp" else {}))
    theta = unlearn(cfg, ctx, unlearner, eps)
    if not np.all(np.isfinite(theta)):
        raise FloatingPointError(f"{unlearner} produced non-finite parameters")
    after = evaluate(theta, *ctx["test"])
    t = as_tensor(theta)
    metrics = {f"before_{k}": v for k, v in ctx["before"].items()}
    metrics.update({f"after_{k}": v for k, v in after.items()})
    metrics.update(
        task_metric=TASK_METRIC[cfg.task],
        val_task_before=ctx["f0"], val_task_after=float(ctx["task_fn"](t)),
        predicted_delta_task=float(-eps @ ctx["infl_task"]),
        actual_delta_task=float(ctx["task_fn"](t)) - ctx["f0"],
        predicted_delta_utility=float(-eps @ ctx["infl_util"]),
        actual_delta_utility=float(ctx["util_fn"](t)) - ctx["u0"],
        n_deleted=int((eps <= -1.0).sum()), weight_min=float(eps.min()),
        weight_max=float(eps.max()), weight_norm=float(np.linalg.norm(eps)),
        seconds=time.perf_counter() - start)
    params = dict(scheme=scheme, hard_fraction=cfg.hard_fraction, target_fraction=cfg.target_fraction,
                  damping_used=ctx["damping"], **ctx["sizes"])
    return metrics, params


def run_config(raw: dict, out_dir: pathlib.Path, smoke: bool = False) -> pathlib.Path:
    """Validate ``raw``, run the grid (skipping finished cells), write ``report.md`` and plots."""
    cfg = SoftWeightingConfig.model_validate(raw)
    out_dir = pathlib.Path(out_dir)
    marker = out_dir / "experiment.json"
    if marker.exists() and json.loads(marker.read_text()).get("name") != cfg.name:
        raise ValueError(f"{out_dir} holds results of experiment {json.loads(marker.read_text()).get('name')!r}; "
                         f"refusing to write {cfg.name!r} there (choose another --out)")
    out_dir.mkdir(parents=True, exist_ok=True)
    marker.write_text(json.dumps({"name": cfg.name, "experiment_type": "soft-weighting", "smoke": smoke,
                                  "config": raw}, indent=1))
    commit = git_commit()
    with ResultStore(out_dir / "results.sqlite") as store:
        for dataset in cfg.datasets:
            bundle = None
            for model in cfg.models:
                for seed in cfg.seeds:
                    cells = [(u, w, cell_key(cfg, smoke, dataset, model, u, w, seed))
                             for u in cfg.unlearners for w in cfg.weightings]
                    cells = [c for c in cells if not store.has(c[2])]
                    if not cells:
                        continue
                    torch.manual_seed(seed)
                    provenance = dict(torch=torch.__version__, device="cpu", git_commit=commit,
                                      seed=seed, python=platform.python_version(), smoke=smoke,
                                      dataset=dataset, model=model)
                    try:
                        bundle = bundle or load_dataset(dataset, cfg.data_dir)
                        provenance["data_source"] = bundle.source
                        ctx, ctx_error = prepare(cfg, bundle, model, seed, smoke), None
                    except Exception as err:  # noqa: BLE001 - stored as the rows' failure reason
                        ctx, ctx_error = None, f"{type(err).__name__}: {err}"
                    for unlearner, weighting, key in cells:
                        row = dict(key=key, experiment=cfg.name, method=unlearner,
                                   weighting=weighting, request=f"{dataset}/{model}/{cfg.task}",
                                   seed=seed, provenance=provenance)
                        try:
                            if ctx is None:
                                raise RuntimeError(ctx_error)
                            metrics, params = run_cell(cfg, ctx, unlearner, weighting)
                            store.put(**row, status="ok", metrics=metrics, params=params)
                        except Exception as err:  # noqa: BLE001 - a failed cell must not stop the grid
                            store.put(**row, status="failed", metrics={}, params={},
                                      error=ctx_error or f"{type(err).__name__}: {err}")
    return rebuild_report(out_dir)


def rebuild_report(out_dir: pathlib.Path) -> pathlib.Path:
    """Write ``report.md`` and plots from the store and the saved config (``forgetkit report``)."""
    from .report import write_report

    meta = json.loads((pathlib.Path(out_dir) / "experiment.json").read_text())
    cfg, smoke = SoftWeightingConfig.model_validate(meta["config"]), meta["smoke"]
    grid = {cell_key(cfg, smoke, d, m, u, w, s) for d in cfg.datasets for m in cfg.models
            for u in cfg.unlearners for w in cfg.weightings for s in cfg.seeds}
    with ResultStore(pathlib.Path(out_dir) / "results.sqlite") as store:
        rows = [r for r in store.rows(experiment=cfg.name) if r["key"] in grid]
    return write_report(cfg, rows, out_dir, smoke=smoke, commit=git_commit())
