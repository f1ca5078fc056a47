"""Python API for a user's own model and data: ``unlearn`` one request, ``evaluate`` models you have.

Everything a user passes is checked up front by :mod:`forgetkit.inputs`, so nothing runs on data
that would give a silently wrong answer; metrics come from the benchmark's own evaluator and
derived measures, so a number here means what it means in a leaderboard row.
"""
from __future__ import annotations

import copy
import time
import warnings
from dataclasses import dataclass, field, replace
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from .data.base import DataBundle, Split
from .data.requests import ForgetRequest
from .inputs import (KeepModes, UnchangedModelWarning, as_split, check_forget_classes, check_heldout_counts,
                     check_inputs, check_labels, check_mia_sizes, check_seed, check_trainable, class_list, model_device,
                     moved, normalisation, normalised, output_size, resolve_classes, resolve_device, unwrapped)
from .inputs import choose_data_path as _choose_data_path
from .methods import METHODS, build_method
from .methods.custom_loss import with_losses
from .options import validate_options
from .unlearn.context import UnlearnContext
from .unlearn.progress import EpochMetrics
from .unlearn.streaming import StreamingUnsupported, StreamSplit, read_training_data, resident
from .unlearn.weightings import WEIGHTINGS, build_weighting

CORE_METRICS = ("FA", "RA", "TA", "MIA")
REFERENCE_METRICS = ("AvgGap", "deviation")


def choose_data_path(data, data_path: str, method: str, name: str = "train") -> str:
    """``"resident"`` or ``"streaming"``: how :func:`unlearn` reads ``data`` for registered ``method``
    (the rules: :func:`forgetkit.inputs.choose_data_path`)."""
    streamers = [n for n in METHODS.names() if getattr(METHODS.get(n), "streams", False)]
    return _choose_data_path(data, data_path, method, getattr(METHODS.get(method), "streams", False), streamers, name)


@dataclass
class EvaluationTable:
    """One row of metrics per model; ``print(table)`` aligns them, ``table.to_pandas()`` gives a DataFrame."""

    rows: dict[str, dict[str, Any]]

    def __getitem__(self, model: str) -> dict[str, Any]:
        return self.rows[model]

    @property
    def columns(self) -> list[str]:
        cols: list[str] = []
        for r in self.rows.values():
            cols += [k for k in r if k not in cols]
        return cols

    def to_pandas(self):
        import pandas as pd

        return pd.DataFrame.from_dict(self.rows, orient="index", columns=self.columns).rename_axis("model")

    def __str__(self) -> str:
        cols = self.columns

        def cell(v) -> str:
            if v is None:
                return "-"
            return f"{v:.2f}" if isinstance(v, (float, np.floating)) else str(v)

        table = [["model", *cols]] + [[name, *(cell(r.get(c)) for c in cols)] for name, r in self.rows.items()]
        widths = [max(len(row[i]) for row in table) for i in range(len(cols) + 1)]
        lines = ["  ".join(v.ljust(w) if i == 0 else v.rjust(w) for i, (v, w) in enumerate(zip(row, widths)))
                 for row in table]
        return "\n".join([lines[0], "  ".join("-" * w for w in widths), *lines[1:]])

    __repr__ = __str__


def _parse_metrics(metrics, have_reference: bool) -> tuple[list[str], list[str]]:
    from .metrics.evaluators import EVALUATORS

    if metrics is None:
        return list(CORE_METRICS) + (list(REFERENCE_METRICS) if have_reference else []), []
    if isinstance(metrics, str):
        metrics = [metrics]
    if not isinstance(metrics, (list, tuple)) or not metrics:
        raise ValueError(f"metrics must be a non-empty list of metric names (or None for FA, RA, TA, MIA), "
                         f"got {metrics!r}")
    core, extra = [], []
    for m in metrics:
        if m in CORE_METRICS or m in REFERENCE_METRICS:
            if m in REFERENCE_METRICS and not have_reference:
                raise ValueError(f"metric {m!r} compares to a retrained model: pass reference=...")
            core.append(m)
        elif isinstance(m, str) and m in EVALUATORS:
            extra.append(m)
        else:
            known = ", ".join([*CORE_METRICS, *REFERENCE_METRICS, *EVALUATORS.names()])
            raise ValueError(f"unknown metric {m!r}; known: {known}")
    return core, extra


def _no_unlearn(model: nn.Module) -> nn.Module:
    raise ValueError("this evaluator re-runs the unlearning on shadow models: pass "
                     "unlearn=fn(model) -> unlearned model to forgetkit.evaluate")


def _check_tau(tau) -> float:
    if isinstance(tau, bool) or not isinstance(tau, (int, float, np.number)) or not np.isfinite(tau) or tau < 0:
        raise ValueError(f"tau must be a finite number >= 0, got {tau!r}")
    return float(tau)


def evaluate(models: dict[str, nn.Module], *, forget, retain, test, reference=None, metrics=None,
             original: nn.Module | None = None, num_classes: int | None = None, forget_classes=(),
             class_names=(), unlearn: Callable[[nn.Module], nn.Module] | None = None, tau: float = 0.05,
             options: dict[str, dict] | None = None, seed: int = 0, normalize=None) -> EvaluationTable:
    """Score models you already have on one forget request; forgetkit as the judge.

    ``models``: name → model (each evaluated where it lives; its train/eval mode is kept).
    ``forget``/``retain``/``test``: data as for :func:`unlearn`. ``reference``: a model retrained
    without the forget set (or a list of them, for evaluators that need several); it adds a
    ``reference`` row, Avg. Gap and FaLW's deviation (under/faithful/over-forgotten shares at
    ``tau``). ``metrics``: FA, RA, TA, MIA, AvgGap, deviation and any registered evaluator
    (``forgetkit methods`` lists them), with keyword options in ``options[name]``; FA/RA/TA/MIA are
    the benchmark's ``standard`` evaluator and Avg. Gap and deviation its derived measures. With
    ``forget_classes`` (a whole-class request: every sample of those classes in ``forget``, none in
    ``retain``; class evaluators need it) TA and MIA use the test samples of the other classes, as
    SalUn does. ``original``/``unlearn``: the model before unlearning and your unlearning as a
    function, for evaluators that re-run it on shadow models (U-LiRA). ``normalize``: the models'
    input normalisation, ``(mean, std)`` per channel or a function of a batch, applied to the
    data (uint8 or [0, 1] images) before every model sees it, as in :func:`unlearn`.
    """
    from .metrics.core import GAP_KEYS, derived_metrics
    from .metrics.evaluators import EVALUATORS, CellView

    if not isinstance(models, dict) or not models:
        raise TypeError("models must be a non-empty dict of name -> torch.nn.Module")
    if unlearn is not None and not callable(unlearn):
        raise TypeError(f"unlearn must be a function model -> unlearned model, got {type(unlearn).__name__}")
    if isinstance(class_names, (str, bytes)) or not isinstance(class_names, (list, tuple)):
        raise TypeError(f"class_names must be a list of names, one per class, got {class_names!r}")
    refs = list(reference) if isinstance(reference, (list, tuple)) else ([reference] if reference is not None else [])
    if "reference" in models and refs:
        raise ValueError("'reference' names the retrained model's row; rename that entry of models")
    core, extra = _parse_metrics(metrics, bool(refs))
    tau, seed = _check_tau(tau), check_seed(seed)
    if options is not None and not isinstance(options, dict):
        raise TypeError(f"options must be a mapping of evaluator name -> options, got {type(options).__name__}")
    for k in options or {}:
        if k not in extra:
            raise ValueError(f"options given for {k!r}, which is not among the requested evaluators {extra}")
    forget, retain, test = as_split(forget, "forget"), as_split(retain, "retain"), as_split(test, "test")
    if not len(forget):
        raise ValueError("forget: the forget set is empty")
    if not len(test):
        raise ValueError("test: the test set is empty; TA and MIA need test samples")
    shape = tuple(forget.x.shape[1:])
    for s, n in ((forget, "forget"), (retain, "retain"), (test, "test")):
        check_inputs(s, n, shape)
    transform = normalisation(normalize, shape)
    wrap = lambda m: normalised(m, transform) if isinstance(m, nn.Module) else m  # noqa: E731
    models = {n: wrap(m) for n, m in models.items()}
    refs = [wrap(r) for r in refs]
    original = wrap(original) if original is not None else None
    rows_models = {**models, **({"reference": refs[0]} if refs else {})}
    named = list(rows_models.items()) + [(f"reference[{i}]", r) for i, r in enumerate(refs[1:], 1)]
    if original is not None:
        named.append(("original", original))
    sizes = {n: output_size(m, forget.x, f"model {n!r}") for n, m in named}
    if len(set(sizes.values())) > 1:
        raise ValueError(f"models give different numbers of outputs: {sizes}; all must score the same classes")
    labels_max = max(int(s.y.max()) for s in (forget, retain, test) if len(s))
    k = resolve_classes(next(iter(sizes.values())), num_classes, labels_max)
    for s, n in ((forget, "forget"), (retain, "retain"), (test, "test")):
        check_labels(s, n, k)
    fc = class_list(forget_classes)
    check_forget_classes(fc, forget, retain, k)

    pool = Split(torch.cat([forget.x, retain.x]), torch.cat([forget.y, retain.y]))
    bundle = DataBundle("user", pool, test, k, "image" if pool.x.dim() == 4 else "tabular", list(class_names))
    request = ForgetRequest(np.arange(len(forget)), "user", "class" if fc else "indices", fc)
    if "MIA" in core:
        check_mia_sizes(len(retain), test, fc)
    template = original if original is not None else (copy.deepcopy(refs[0]) if refs and extra else None)
    user_unlearn = None if unlearn is None else (lambda m: wrap(unlearn(unwrapped(m))))

    def references(m: int) -> list[nn.Module]:
        if m > len(refs):
            raise ValueError(f"this evaluator needs {m} retrained references; pass reference=[...] with {m} models "
                             "retrained without the forget set (different seeds)")
        return refs[:m]

    ev_options = {}
    for e in extra:
        if getattr(EVALUATORS.get(e), "class_requests_only", False) and not fc:
            raise ValueError(f"metric {e!r} measures whole-class forgetting: pass forget_classes=[...] (the classes "
                             "the forget set removes whole)")
        ev_options[e] = validate_options(EVALUATORS.get(e), (options or {}).get(e, {}), f"evaluator {e!r} options")
        getattr(EVALUATORS.get(e), "check", lambda o: None)(ev_options[e])

    def view(name: str, m: nn.Module) -> CellView:
        return CellView(m, template if template is not None else m, refs[0] if refs else m, bundle, forget,
                        retain, test, request, seed, model_device(m), references,
                        None if name == "reference" else (user_unlearn or _no_unlearn))

    table: dict[str, dict[str, Any]] = {}
    with KeepModes(*(m for _, m in named)):
        standard = {name: EVALUATORS.get("standard")(view(name, m)) for name, m in rows_models.items()}
        ref_ev = standard.get("reference")
        for name, m in rows_models.items():
            ev, row = standard[name], {}
            derived = derived_metrics(ev, ref_ev, ev["forget_probs"], ref_ev["forget_probs"], tau) if ref_ev else {}
            for key in core:
                if key in GAP_KEYS or key == "AvgGap":
                    row[key] = ev[key] if key in GAP_KEYS else derived[key]
                else:
                    row.update({k: v for k, v in derived.items() if k.startswith("dev_")})
            for e in extra:
                out = EVALUATORS.get(e)(view(name, m), **ev_options[e])
                row.update({k: v for k, v in out.items() if isinstance(v, (str, int, float, np.number))})
            table[name] = row
    return EvaluationTable(table)


@dataclass
class UnlearnResult:
    """The unlearned model, how long it took, and (with ``test``) its metrics beside the original's."""

    model: nn.Module
    metrics: dict[str, float] = field(default_factory=dict)
    """FA/RA/TA/MIA of the unlearned model; with a reference also retrain_* values, AvgGap, dev_*"""
    info: dict = field(default_factory=dict)
    """what the method reports (per-epoch history, steps, ...)"""
    original_metrics: dict[str, float] = field(default_factory=dict)
    """the same metrics for the model before unlearning: did unlearning beat doing nothing?"""
    seconds: float = 0.0
    """wall-clock time of the unlearning itself (checks and evaluation excluded)"""
    table: EvaluationTable | None = None
    """original / unlearned / reference rows side by side (None without ``test``)"""

    def __repr__(self) -> str:
        head = f"UnlearnResult(seconds={self.seconds:.2f}"
        return head + (")" if self.table is None else f", table=\n{self.table}\n)")


def unlearn(model: nn.Module, train, forget_indices, method: str = "rl", *, num_classes: int | None = None,
            heldout=None, test=None, reference: nn.Module | None = None, weighting: str = "uniform",
            weighting_options: dict | None = None, forget_classes=(), seed: int = 0, device=None,
            progress: Callable[[int, int], None] | str | None = None, forget_loss=None, retain_loss=None,
            data_path: str = "auto", normalize=None, update_frozen_stats: bool = False,
            **method_options) -> UnlearnResult:
    """Unlearn ``forget_indices`` of ``train`` from ``model`` with a registered method.

    ``train``/``heldout``/``test``: a :class:`Split`, an ``(x, y)`` pair (images uint8 N×C×H×W or
    float in [0, 1]; tabular float; integer labels), a map-style ``Dataset`` or a ``DataLoader``
    yielding ``(x, y)`` (a training DataLoader must not shuffle, since the indices refer to its
    order). ``normalize``: the model's input normalisation, ``(mean, std)`` (one value per channel,
    or one for all) or any function of a batch; the data stays uint8 or [0, 1] and the model sees
    ``normalize(x)`` wherever forgetkit runs it (:func:`evaluate` and ``forgetkit.audit`` take the
    same keyword). ``data_path``: ``"auto"`` streams a DataLoader, a Dataset with a transform or one too
    large for memory (transforms run at every read) and keeps tensors resident;
    ``"resident"``/``"streaming"`` force a path (:func:`choose_data_path`); ``heldout`` and ``test``
    are always read into memory once. The input model is not modified; the copy stays on the model's
    device unless ``device`` ("cpu", "cuda", "auto") is given. ``num_classes`` defaults to the
    model's output size. ``forget_classes``: the classes the request removes whole (every sample
    of them among ``forget_indices``; other forget samples may be single ones). ``update_frozen_stats``: False keeps the
    running statistics of norm layers (BatchNorm) inside modules whose parameters are all frozen
    (``requires_grad=False``) as they are; True lets training update them too.
    ``progress(step, total)`` is called after each optimiser step;
    ``progress="metrics"`` prints each epoch's loss and forget/retain accuracy instead (on at most
    512 fixed samples of each, eval mode, fp32; one line at the end for methods without epochs).
    ``forget_loss``/``retain_loss``: ``fn(logits, y) -> per-sample losses`` (minimised) replacing
    the method's own term. With ``test``, the result holds the original's and the unlearned
    model's FA/RA/TA/MIA (as :func:`evaluate` scores them); with ``reference`` (retrained without
    the forget set) also Avg. Gap and the deviation. A :class:`~forgetkit.inputs.UnchangedModelWarning`
    says when unlearning left every parameter (or every metric) as it was.
    """
    name = method
    opts = validate_options(METHODS.get(name), method_options, f"method {name!r} options")
    if opts.get("epochs") == 0:
        raise ValueError(f"epochs=0 would return the model unchanged; method {name!r} needs epochs >= 1")
    m = build_method(name, **opts)
    if forget_loss is not None or retain_loss is not None:
        m = with_losses(m, name, forget_loss, retain_loss)
    w_opts = validate_options(WEIGHTINGS.get(weighting), weighting_options or {}, f"weighting {weighting!r} options")
    w = build_weighting(weighting, **w_opts)
    printer = None
    if isinstance(progress, str):
        if progress != "metrics":
            raise ValueError(f"progress must be a function (step, total) -> None or 'metrics', got {progress!r}")
        printer = progress = EpochMetrics()
    elif progress is not None and not callable(progress):
        raise TypeError(f"progress must be a function (step, total) -> None or 'metrics', "
                        f"got {type(progress).__name__}")
    if reference is not None and test is None:
        raise ValueError("metrics against a reference need a test set (test=...)")
    seed = check_seed(seed)
    if not isinstance(update_frozen_stats, bool):
        raise TypeError(f"update_frozen_stats must be True or False, got {update_frozen_stats!r}")
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    check_trainable(model)
    dev = resolve_device(device, model)

    path = choose_data_path(train, data_path, name)
    train, idx = read_training_data(train, forget_indices, path, scored=test is not None)
    shape = tuple(train.x.shape[1:])
    held = as_split(heldout, "heldout") if heldout is not None else None
    test_s = as_split(test, "test") if test is not None else None
    for s, n in ((held, "heldout"), (test_s, "test")):
        if s is not None:
            check_inputs(s, n, shape)
    transform = normalisation(normalize, shape)
    wrapped = normalised(model, transform)
    k = output_size(wrapped, train.x)
    if reference is not None and output_size(normalised(reference, transform), train.x, "reference") != k:
        raise ValueError(f"the reference has {output_size(reference, train.x)} outputs but the model has {k}")
    labels_max = max(int(s.y.max()) for s in (train, held, test_s) if s is not None and len(s))
    num_classes = resolve_classes(k, num_classes, labels_max)
    for s, n in ((train, "train"), (held, "heldout"), (test_s, "test")):
        if s is not None:
            check_labels(s, n, num_classes)
    if "heldout" in w.needs and held is not None:
        check_heldout_counts(held, train.y[torch.as_tensor(idx)], num_classes, f"weighting {weighting!r}")

    retain_idx = np.setdiff1d(np.arange(len(train)), idx)
    forget_s, retain_s = train.subset(idx), train.subset(retain_idx)
    fc = class_list(forget_classes)
    check_forget_classes(fc, forget_s, retain_s, num_classes)
    if test_s is not None:
        check_mia_sizes(len(retain_s), test_s, fc)
    if isinstance(train, StreamSplit):  # errors name the split a method reads
        forget_s, retain_s = replace(forget_s, name="forget"), replace(retain_s, name="retain")
    ctx = UnlearnContext(original=wrapped, forget=forget_s, retain=retain_s, heldout=held, num_classes=num_classes,
                         device=dev, seed=seed, kind="image" if len(shape) == 3 else "tabular", forget_classes=fc,
                         update_frozen_stats=update_frozen_stats)
    torch.manual_seed(seed)
    start = time.perf_counter()
    try:
        out, info = m.unlearn(wrapped, ctx, w, progress)
    except StreamingUnsupported as e:
        raise StreamingUnsupported(f"method {name!r} cannot run on streamed data: {e}") from None
    except ValueError as e:  # torch's BatchNorm on a batch of one sample, reached by the method's own batches
        if "Expected more than 1 value per channel when training" not in str(e):
            raise
        raise ValueError(f"method {name!r} ran a batch of one sample through a BatchNorm layer in train mode, which "
                         f"cannot normalise it (forget_indices: {len(idx)} sample(s)); forget at least 2 samples with batch_size >= 2, "
                         "or use a method that mixes forget and retain samples in one batch (rl, ft)") from None
    seconds = time.perf_counter() - start
    info = {**info, "data_path": path}
    if printer is not None and not printer.lines:  # a method without engine epochs: one line at the end
        printer.line(out, ctx, f"{name} done")
    out = unwrapped(out)
    if not moved(model, out):
        warnings.warn(f"unlearning with {name!r} left every parameter of the model as it was (within float noise); "
                      "the result is the original model: raise lr or epochs, or check which parameters are frozen",
                      UnchangedModelWarning, stacklevel=2)
    if test_s is None:
        return UnlearnResult(out, {}, info, {}, seconds)
    table = evaluate({"original": model, "unlearned": out}, forget=resident(ctx.forget), retain=resident(ctx.retain),
                     test=test_s, reference=reference, num_classes=num_classes, forget_classes=fc, normalize=transform)
    metrics = dict(table["unlearned"])
    if all(metrics[k] == table["original"][k] for k in CORE_METRICS) and moved(model, out):
        warnings.warn(f"unlearning with {name!r} left FA, RA, TA and MIA exactly as the original's: the model's "
                      "predictions did not change; raise lr or epochs", UnchangedModelWarning, stacklevel=2)
    if reference is not None:
        metrics |= {f"retrain_{k}": table["reference"][k] for k in CORE_METRICS}
    return UnlearnResult(out, metrics, info, dict(table["original"]), seconds, table)
