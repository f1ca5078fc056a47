"""The soft-weighting experiment (``experiment_type: soft-weighting``): grid, store rows, report.

Grid: datasets × models × unlearners × {hard, soft} × seeds, for one task (dp, eop or
robustness). Per (dataset, model, seed) the head is trained and the influences computed once; each
(unlearner, weighting) cell is one row of the shared :class:`~forgetkit.bench.store.ResultStore`,
keyed by a SHA-256 of everything that defines it, so a re-run skips finished cells and retries
failed ones. Defaults follow the reference scripts ``SEC-5-2-0-1.py`` / ``SEC-5-2-0-2.py`` of
``XinbaoQiao/Soft-Weighted-Machine-Unlearning`` (k = 0.2, soft-2.3, 30 fine-tuning epochs).

Two protocols (``protocol:``):

* ``forgetkit`` (default): :mod:`forgetkit.data.tabular`'s encoding (numeric columns standardised,
  0/1 indicators), a seeded validation half of the test split per seed, LR L2 = 1, metrics on the
  other half, |DP| / |EOP| of hard predictions;
* ``reference``: the reference pipeline (:func:`forgetkit.data.tabular.load_reference`: every
  column standardised, its fixed validation / test splits, the published L2 strengths), the
  reference's MLP (:func:`.features.reference_mlp`, up to 15,000 iterations, ``min_delta`` 0, the
  first ⌊1 %⌋ of a ``RandomState(seed)`` permutation for the extractor) and its reporting: every
  number on the **validation** split, fairness as the signed surrogates (``SEC-5-2-0-2.py`` saves
  ``loss_dp`` / ``loss_ferm`` of the validation rows).
"""
from __future__ import annotations

import hashlib
import json
import pathlib
import platform
import time
from typing import Literal

import numpy as np
import torch
from pydantic import Field, field_validator, model_validator

from ..bench.config import StrictModel, validate_schema
from ..bench.experiments import ExperimentKind, RunSummary, register_kind
from ..bench.workspace import code_commit, guard_output
from ..bench.store import ResultStore, read_experiment
from ..data import DATASETS, load_dataset
from ..data.tabular import REFERENCE_L2, REFERENCE_LOADERS, load_reference
from .core import LinearInfluence, as_tensor
from .features import embed, train_feature_extractor
from .metrics import evaluate
from .report import REPORT_SPLIT, TASK_METRIC, write_report
from .targets import adversarial_points, make_task, utility_loss, value_and_grad
from .unlearners import UNLEARNERS, FittedHead, fit_logistic
from .weights import compute_weights

EXPERIMENT_TYPE = "soft-weighting"
FORGETKIT_LOGREG_L2 = 1.0
"""L2 of the LR head under ``protocol: forgetkit`` when ``l2_reg.logreg`` is not given."""
REFERENCE_DEFAULTS = {"mlp": {"max_iter": 15000, "min_delta": 0.0}}
"""Values ``protocol: reference`` gives to fields the config leaves out (``model.py``
``NNLastLayerIF``: ``n_iter=15000``, early stopping on any non-improvement)."""


class L2Config(StrictModel):
    """L2 coefficient of the summed-loss objective per model. ``logreg: null`` = the protocol's
    value: 1.0 (forgetkit) or the dataset's published ``meta.json`` value (reference: 2.2622 /
    37 / 5.84843 for Adult / COMPAS / German); the NN head uses 1e-4 as the reference."""
    logreg: float | None = Field(None, ge=0.0)
    mlp: float = Field(1e-4, ge=0.0)


class MLPConfig(StrictModel):
    """Feature extractor of the "NN last layer" model (trained on a small seeded fraction)."""
    feature_fraction: float = Field(0.01, gt=0.0, lt=1.0)
    min_feature_rows: int = Field(100, ge=1)
    lr: float = 1e-2
    max_iter: int = Field(2000, ge=1)
    patience: int = Field(10, ge=1)
    min_delta: float = Field(1e-5, ge=0.0)


class QPConfig(StrictModel):
    """Options of the cvxpy soft scheme (``soft_scheme: qp``); see :func:`weights.qp_weights`."""
    task_weight: float = 0.0
    utility_tolerance: float = Field(0.0, ge=0.0)
    lower: float | None = None
    upper: float | None = None
    solver: Literal["CLARABEL", "OSQP"] = "CLARABEL"


class FinetuneConfig(StrictModel):
    lr: float = 1e-3
    weight_decay: float = 1e-3
    epochs: int = Field(30, ge=1)


class GAConfig(StrictModel):
    lr: float = 1e-3
    epochs: int = Field(30, ge=1)


class SoftWeightingConfig(StrictModel):
    """Validated YAML of a soft-weighting run; unknown fields are errors naming the field."""
    experiment_type: Literal["soft-weighting"] = EXPERIMENT_TYPE
    name: str = "soft-weighting"
    protocol: Literal["forgetkit", "reference"] = "forgetkit"
    task: Literal["dp", "eop", "robustness"]
    datasets: list[str] = Field(min_length=1)
    models: list[Literal["logreg", "mlp"]] = Field(default_factory=lambda: ["logreg", "mlp"])
    unlearners: list[str] = Field(default_factory=lambda: ["influence", "retrain", "finetune", "ga"],
                                  min_length=1)
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

    @model_validator(mode="before")
    @classmethod
    def _protocol_defaults(cls, raw):
        if isinstance(raw, dict) and raw.get("protocol") == "reference":
            raw = dict(raw)
            for section, values in REFERENCE_DEFAULTS.items():
                given = raw.get(section)
                raw[section] = {**values, **given} if isinstance(given, dict) else (
                    dict(values) if given is None else given)
        return raw

    @field_validator("datasets")
    @classmethod
    def _known_datasets(cls, v, info):
        reference = info.data.get("protocol") == "reference"
        known = sorted(REFERENCE_LOADERS) if reference else DATASETS.names()
        unknown = [d for d in v if d not in known]
        if unknown:
            raise ValueError(f"unknown {unknown}; known{' to the reference protocol' * reference}: {known}")
        return v

    @field_validator("unlearners")
    @classmethod
    def _known_unlearners(cls, v):
        unknown = [u for u in v if u not in UNLEARNERS]
        if unknown:
            raise ValueError(f"unknown {unknown}; known: {UNLEARNERS.names()}")
        return v

    @field_validator("validation_fraction")
    @classmethod
    def _own_split_only(cls, v, info):
        if info.data.get("protocol") == "reference":
            raise ValueError("the reference protocol uses its fixed validation split; remove this field")
        return v

    @field_validator("mlp")
    @classmethod
    def _reference_feature_rows(cls, v, info):
        if info.data.get("protocol") == "reference" and "min_feature_rows" in v.model_fields_set:
            raise ValueError("min_feature_rows: the reference protocol trains the extractor on "
                             "⌊feature_fraction·n⌋ rows with no minimum; remove this field")
        return v


def parse_config(raw) -> SoftWeightingConfig:
    """Validate ``raw``; errors are one ``field: problem`` line each, as the image experiments'."""
    return validate_schema(SoftWeightingConfig, raw)


SMOKE = {"max_train": 1500, "max_test": 1000, "mlp_max_iter": 300}
"""What ``smoke=True`` shrinks: training rows, test rows (forgetkit: before the validation split;
reference: half each for validation and test), MLP iterations."""


def cell_key(cfg: SoftWeightingConfig, smoke: bool, dataset: str, model: str, unlearner: str,
             weighting: str, seed: int) -> str:
    """SHA-256 of the cell's coordinates and every hyper-parameter (grid lists excluded)."""
    hyper = cfg.model_dump(exclude={"datasets", "models", "unlearners", "weightings", "seeds",
                                    "data_dir"})
    payload = dict(hyper=hyper, smoke=smoke, dataset=dataset, model=model, unlearner=unlearner,
                   weighting=weighting, seed=seed)
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def planned_keys(cfg: SoftWeightingConfig, smoke: bool) -> set[str]:
    """The keys of every cell of the grid; saved beside the run so that a report rebuilt by later
    code (whose key hashing may differ) still finds the run's rows."""
    return {cell_key(cfg, smoke, d, m, u, w, s) for d in cfg.datasets for m in cfg.models
            for u in cfg.unlearners for w in cfg.weightings for s in cfg.seeds}


def _subsample(n: int, limit: int | None, rng: np.random.RandomState) -> np.ndarray:
    return np.arange(n) if limit is None or n <= limit else np.sort(rng.choice(n, limit, replace=False))


def _numpy(split, idx):
    return (split.x[idx].double().numpy(), split.y[idx].numpy(), split.sensitive[idx].numpy())


def _forgetkit_splits(cfg, bundle, seed: int, smoke: bool):
    """Train rows, and a seeded validation / test halving of the test split."""
    rng = np.random.RandomState(seed)
    tr = _subsample(len(bundle.train), SMOKE["max_train"] if smoke else cfg.max_train, rng)
    te = _subsample(len(bundle.test), SMOKE["max_test"] if smoke else None, rng)
    perm = rng.permutation(te)
    n_val = int(round(cfg.validation_fraction * len(perm)))
    return (_numpy(bundle.train, tr), _numpy(bundle.test, np.sort(perm[:n_val])),
            _numpy(bundle.test, np.sort(perm[n_val:])), rng)


def _reference_splits(cfg, data, seed: int, smoke: bool):
    """The reference's fixed splits; ``max_train`` draws rows as its ``--num_data`` does
    (``np.random.choice`` right after seeding, unsorted), so the extractor permutation that
    follows equals the reference's for the same seed."""
    rng = np.random.RandomState(seed)
    limit = SMOKE["max_train"] if smoke else cfg.max_train
    n = len(data.train)
    tr = rng.choice(n, limit, replace=False) if limit is not None and n > limit else np.arange(n)
    side = np.random.RandomState(seed + 1)
    cap = SMOKE["max_test"] // 2 if smoke else None
    return (_numpy(data.train, tr), _numpy(data.val, _subsample(len(data.val), cap, side)),
            _numpy(data.test, _subsample(len(data.test), cap, side)), rng)


def _extractor_rows(cfg, n: int, rng: np.random.RandomState) -> tuple[np.ndarray, np.ndarray]:
    """(extractor rows, head rows) of the "NN last layer" model."""
    order = rng.permutation(n)
    if cfg.protocol == "reference":  # SEC-5-2-0-2.py: int(n * 0.01), permutation order kept
        n_feat = int(n * cfg.mlp.feature_fraction)
        return order[:n_feat], order[n_feat:]
    n_feat = max(cfg.mlp.min_feature_rows, int(round(cfg.mlp.feature_fraction * n)))
    return order[:n_feat], np.sort(order[n_feat:])


def load_source(cfg: SoftWeightingConfig, dataset: str):
    """The dataset as the protocol defines it (a ``DataBundle`` or a ``ReferenceData``)."""
    if cfg.protocol == "reference":
        return load_reference(dataset, cfg.data_dir)
    return load_dataset(dataset, cfg.data_dir)


def l2_of(cfg: SoftWeightingConfig, dataset: str, model: str) -> float:
    if model == "mlp":
        return cfg.l2_reg.mlp
    if cfg.l2_reg.logreg is not None:
        return cfg.l2_reg.logreg
    return REFERENCE_L2[dataset] if cfg.protocol == "reference" else FORGETKIT_LOGREG_L2


def prepare(cfg: SoftWeightingConfig, source, dataset: str, model: str, seed: int, smoke: bool) -> dict:
    """Splits, features, the trained head θ̂, influences on task and utility, and 'before' metrics."""
    splits = _reference_splits if cfg.protocol == "reference" else _forgetkit_splits
    (x_tr, y_tr, _), (x_val, y_val, s_val), (x_te, y_te, s_te), rng = splits(cfg, source, seed, smoke)
    if model == "mlp":
        feat, pool = _extractor_rows(cfg, len(y_tr), rng)
        extractor = train_feature_extractor(
            x_tr[feat], y_tr[feat], seed, lr=cfg.mlp.lr, patience=cfg.mlp.patience,
            min_delta=cfg.mlp.min_delta, max_iter=SMOKE["mlp_max_iter"] if smoke else cfg.mlp.max_iter,
            architecture=cfg.protocol)
        x_tr, y_tr = embed(extractor, x_tr[pool]), y_tr[pool]
        x_val, x_te = embed(extractor, x_val), embed(extractor, x_te)
    l2 = l2_of(cfg, dataset, model)
    theta = fit_logistic(x_tr, y_tr, l2)
    infl = LinearInfluence(l2, method=cfg.influence_method, damping=cfg.damping).fit(theta, x_tr, y_tr)
    task_fn = make_task(cfg.task, theta, x_val, y_val, s_val, cfg.overshoot)
    util_fn = lambda t: utility_loss(t, as_tensor(x_val), as_tensor(y_val))  # noqa: E731
    f0, grad_f = value_and_grad(task_fn, theta)
    u0, grad_u = value_and_grad(util_fn, theta)
    x_rep, y_rep, s_rep = (x_val, y_val, s_val) if cfg.protocol == "reference" else (x_te, y_te, s_te)
    report = (x_rep, y_rep, s_rep, adversarial_points(theta, x_rep, cfg.overshoot).numpy())
    return dict(head=FittedHead(theta, x_tr, y_tr, infl), task_fn=task_fn, util_fn=util_fn, f0=f0,
                u0=u0, infl_task=infl.influence(grad_f), infl_util=infl.influence(grad_u),
                report=report, before=evaluate(theta, *report),
                sizes=dict(n_train=len(y_tr), n_val=len(y_val), n_test=len(y_te),
                           n_features=x_tr.shape[1]), l2_reg=l2, damping=infl.damping_)


def run_cell(cfg: SoftWeightingConfig, ctx: dict, unlearner: str, weighting: str) -> tuple[dict, dict]:
    """Weights, unlearning, metrics; returns (metrics, params) of one row."""
    start = time.perf_counter()
    scheme = "hard" if weighting == "hard" else cfg.soft_scheme
    eps = compute_weights(scheme, ctx["infl_task"], ctx["infl_util"], ctx["f0"],
                          hard_fraction=cfg.hard_fraction, target_fraction=cfg.target_fraction,
                          lam=cfg.lam, **(cfg.qp.model_dump() if scheme == "qp" else {}))
    theta = UNLEARNERS.get(unlearner)(ctx["head"], eps, cfg)
    if not np.all(np.isfinite(theta)):
        raise FloatingPointError(f"{unlearner} produced non-finite parameters")
    after = evaluate(theta, *ctx["report"])
    t = as_tensor(theta)
    metrics = {f"before_{k}": v for k, v in ctx["before"].items()}
    metrics.update({f"after_{k}": v for k, v in after.items()})
    metrics.update(
        task_metric=TASK_METRIC[cfg.protocol][cfg.task],
        val_task_before=ctx["f0"], val_task_after=float(ctx["task_fn"](t)),
        predicted_delta_task=float(-eps @ ctx["infl_task"]),
        actual_delta_task=float(ctx["task_fn"](t)) - ctx["f0"],
        predicted_delta_utility=float(-eps @ ctx["infl_util"]),
        actual_delta_utility=float(ctx["util_fn"](t)) - ctx["u0"],
        n_deleted=int((eps <= -1.0).sum()), weight_min=float(eps.min()),
        weight_max=float(eps.max()), weight_norm=float(np.linalg.norm(eps)),
        seconds=time.perf_counter() - start)
    params = dict(scheme=scheme, hard_fraction=cfg.hard_fraction, target_fraction=cfg.target_fraction,
                  protocol=cfg.protocol, report_split=REPORT_SPLIT[cfg.protocol], l2_reg=ctx["l2_reg"],
                  damping_used=ctx["damping"], **ctx["sizes"])
    return metrics, params


def run_config(raw: dict, out: pathlib.Path, smoke: bool = False) -> pathlib.Path:
    """Validate ``raw``, run the grid (skipping finished cells), write ``report.md`` and plots."""
    cfg = parse_config(raw)
    out = pathlib.Path(out)
    guard_output(out, cfg)
    commit = code_commit()
    out.mkdir(parents=True, exist_ok=True)
    (out / "experiment.json").write_text(json.dumps(
        {"name": cfg.name, "experiment_type": EXPERIMENT_TYPE, "smoke": smoke, "commit": commit,
         "config": raw, "keys": sorted(planned_keys(cfg, smoke))}, indent=1))
    with ResultStore(out / "results.sqlite") as store:
        for dataset in cfg.datasets:
            source = None
            for model in cfg.models:
                for seed in cfg.seeds:
                    cells = [(u, w, cell_key(cfg, smoke, dataset, model, u, w, seed))
                             for u in cfg.unlearners for w in cfg.weightings]
                    cells = [c for c in cells if not store.has(c[2])]
                    if not cells:
                        continue
                    torch.manual_seed(seed)
                    provenance = dict(torch=torch.__version__, device=f"cpu ({platform.machine()})",
                                      git_commit=commit, seed=seed, python=platform.python_version(),
                                      smoke=smoke, dataset=dataset, model=model, protocol=cfg.protocol)
                    try:
                        source = source or load_source(cfg, dataset)
                        provenance["data_source"] = source.source
                        ctx, ctx_error = prepare(cfg, source, dataset, model, seed, smoke), None
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
    return rebuild_report(out)


def rebuild_report(out: pathlib.Path) -> pathlib.Path:
    """Write ``report.md`` and plots from the store, the saved config and the saved cell keys
    (``forgetkit report``), labelled with the commits the rows were computed at, not the code that
    rebuilds it."""
    out = pathlib.Path(out)
    meta = read_experiment(out, ("config", "smoke"))
    cfg, smoke = parse_config(meta["config"]), meta["smoke"]
    grid = set(meta["keys"]) if "keys" in meta else planned_keys(cfg, smoke)
    with ResultStore(out / "results.sqlite", create=False) as store:
        rows = [r for r in store.rows(experiment=cfg.name) if r["key"] in grid]
    commits = sorted({r["provenance"].get("git_commit", "unknown") for r in rows}) or [meta.get("commit", "unknown")]
    return write_report(cfg, rows, out, smoke=smoke, commits=commits)


def _run_kind(raw: dict, out: pathlib.Path, *, smoke: bool = False, show_progress: bool = True,
              executor: str = "local", executor_options: dict | None = None) -> RunSummary:
    """The ``soft-weighting`` experiment kind: cells run in this process (closed-form, seconds each)."""
    if executor != "local" or executor_options:
        raise ValueError("soft-weighting experiments run in-process: drop --executor/--address")
    report = run_config(raw, out, smoke=smoke)
    keys = set(json.loads((pathlib.Path(out) / "experiment.json").read_text())["keys"])
    with ResultStore(pathlib.Path(out) / "results.sqlite") as store:
        failed = [(f"{r['method']} / {r['weighting']} / {r['request']} / seed {r['seed']}", str(r["error"]))
                  for r in store.rows(status="failed") if r["key"] in keys]
    return RunSummary(report, len(keys), failed)


register_kind(EXPERIMENT_TYPE, ExperimentKind(_run_kind, rebuild_report))
