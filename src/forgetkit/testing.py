"""Public conformance checks for unlearning methods (in the spirit of scikit-learn's ``check_estimator``).

In your own tests::

    from forgetkit.testing import check_method
    check_method(MyMethod, options={"epochs": 1}, efficacy_options={"lr": 0.05})

The problem is tiny and real: sklearn's digits, a 32-unit MLP trained for 6 epochs, class 0
forgotten. A model retrained without class 0 has forget accuracy 0, so "toward the retrained
reference" means forget accuracy drops while retain accuracy stays far above chance (0.1).
Each check raises ``AssertionError`` naming the method and what failed.
"""
from __future__ import annotations

import copy
import dataclasses
import functools

import numpy as np
import torch

from .data.base import Split, as_float
from .methods.base import Method
from .unlearn.context import UnlearnContext
from .unlearn.weightings import Uniform

FORGET_DROP = 0.15
"""forget accuracy must fall by at least this much (absolute) in the efficacy check"""
RETAIN_FLOOR = 0.5
"""retain accuracy must stay at least this high (chance is 0.1)"""
SPLITS = ("retain", "heldout")


@dataclasses.dataclass(frozen=True)
class Problem:
    """The trained model and the forget / retain / held-out splits of the conformance problem."""

    model: torch.nn.Module
    forget: Split
    retain: Split
    heldout: Split


@functools.lru_cache(maxsize=1)
def _problem_cached() -> Problem:
    from sklearn.datasets import load_digits

    from .models import build_model
    from .train import TrainRecipe, train_classifier

    d = load_digits()
    x = torch.tensor(np.round(d.images * 255 / 16), dtype=torch.uint8).unsqueeze(1)
    y = torch.tensor(d.target)
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))
    train, held = Split(x[perm[:1500]], y[perm[:1500]]), Split(x[perm[1500:]], y[perm[1500:]])
    state = torch.get_rng_state()
    torch.manual_seed(0)
    model = build_model("mlp", (1, 8, 8), 10, hidden=32)
    train_classifier(model, train, TrainRecipe(epochs=6, lr=0.1, batch_size=64), 0, torch.device("cpu"), 10)
    torch.set_rng_state(state)
    is_f = train.y == 0
    return Problem(model.eval(), train.subset(torch.where(is_f)[0]), train.subset(torch.where(~is_f)[0]), held)


def conformance_problem() -> Problem:
    """The shared problem (trained once per process, in about a second on one CPU core).

    Each call gets its own copy of the model, so a method that mutates its input fails its own
    check without breaking the checks of the methods after it.
    """
    p = _problem_cached()
    return dataclasses.replace(p, model=copy.deepcopy(p.model))


def context(problem: Problem, splits=SPLITS, classes=(0,), seed: int = 0) -> UnlearnContext:
    """An unlearning context giving the method only ``splits`` (besides forget) and ``classes``."""
    given = {"retain": problem.retain, "heldout": problem.heldout}
    return UnlearnContext(original=problem.model, forget=problem.forget, num_classes=10, seed=seed,
                          forget_classes=tuple(classes), **{k: v for k, v in given.items() if k in splits})


def accuracy(model: torch.nn.Module, split: Split) -> float:
    with torch.no_grad():
        return (model.eval()(as_float(split.x)).argmax(1) == split.y).float().mean().item()


def _label(cls) -> str:
    return getattr(cls, "registry_name", cls.__name__)


def _build(cls, options: dict) -> Method:
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(options) - known)
    if unknown:
        raise ValueError(f"{cls.__name__} has no option(s) {unknown}; options: {sorted(known)}")
    return cls(**options)


def check_contract(cls, options: dict | None = None, problem: Problem | None = None) -> None:
    """Same architecture/device/dtype, input untouched, bitwise reproducible, finite, params() a dict."""
    problem = problem or conformance_problem()
    options = options or {}
    name, model = _label(cls), problem.model
    before = {k: v.detach().clone() for k, v in model.state_dict().items()}
    method = _build(cls, options)
    declared = tuple(s for s in SPLITS if s in method.needs)
    out1, info = method.unlearn(model, context(problem, declared), Uniform())
    out2, _ = _build(cls, options).unlearn(model, context(problem, declared), Uniform())
    assert out1 is not model, f"{name}: unlearn must return a copy, not the model it was given"
    assert isinstance(info, dict), f"{name}: unlearn must return (model, info dict), got info {type(info).__name__}"
    assert isinstance(method.params(), dict), f"{name}: params() must give its hyper-parameters as a dict"
    sd0, sd1, sd2 = model.state_dict(), out1.state_dict(), out2.state_dict()
    assert list(sd1) == list(sd0), f"{name}: the unlearned model has other parameters than the original"
    for k, v in sd0.items():
        assert sd1[k].shape == v.shape and sd1[k].dtype == v.dtype and sd1[k].device == v.device, \
            f"{name}: {k} changed shape, dtype or device"
        assert torch.equal(v, before[k]), f"{name} mutated its input model ({k})"
        assert torch.equal(sd1[k], sd2[k]), f"{name} is not reproducible with the same seed ({k})"
        if sd1[k].is_floating_point():
            assert torch.isfinite(sd1[k]).all(), f"{name}: {k} has NaN or inf after unlearning"


def check_needs_enforced(cls, options: dict | None = None, problem: Problem | None = None) -> None:
    """A declared split that is missing, or a non-class request to a class-only method, is a ValueError."""
    problem = problem or conformance_problem()
    name = _label(cls)
    method = _build(cls, options or {})
    for split in SPLITS:
        if split in method.needs:
            others = tuple(s for s in SPLITS if s != split)
            try:
                method.unlearn(problem.model, context(problem, others), Uniform())
            except ValueError as e:
                assert split in str(e), f"{name}: the error for a missing {split} set does not name it: {e}"
            else:
                raise AssertionError(f"{name} declares it needs a {split} set but ran without one")
    if method.class_only:
        try:
            method.unlearn(problem.model, context(problem, classes=()), Uniform())
        except ValueError as e:
            assert "class" in str(e), f"{name}: the error for a non-class request does not say so: {e}"
        else:
            raise AssertionError(f"{name} is class_only but ran on a request without classes")


def check_efficacy(cls, options: dict | None = None, problem: Problem | None = None,
                   forget_drop: float = FORGET_DROP, retain_floor: float = RETAIN_FLOOR) -> None:
    """Forget accuracy falls by ``forget_drop`` and retain accuracy stays above ``retain_floor``."""
    problem = problem or conformance_problem()
    name = _label(cls)
    out, _ = _build(cls, options or {}).unlearn(problem.model, context(problem), Uniform())
    fa0, fa, ra = accuracy(problem.model, problem.forget), accuracy(out, problem.forget), accuracy(out, problem.retain)
    assert fa <= fa0 - forget_drop, f"{name}: forget accuracy {fa0:.2f} -> {fa:.2f}, needs a drop of {forget_drop}"
    assert ra >= retain_floor, f"{name}: retain accuracy fell to {ra:.2f} (floor {retain_floor}, chance 0.10)"


def check_method(cls, *, options: dict | None = None, efficacy_options: dict | None = None,
                 efficacy: bool = True) -> list[str]:
    """Run every conformance check on a method class (registered or not); returns the checks passed.

    ``options``: cheap settings for the contract checks (e.g. ``{"epochs": 1}``);
    ``efficacy_options``: settings under which the method should forget class 0 of the tiny problem
    (its defaults if None); ``efficacy=False`` skips that check (e.g. for a method meant for
    random forgetting only).
    """
    if not (isinstance(cls, type) and issubclass(cls, Method) and dataclasses.is_dataclass(cls)):
        raise TypeError(f"check_method expects a @dataclass subclass of forgetkit.methods.base.Method, got {cls!r}")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: threads only add contention
    try:
        done = []
        check_contract(cls, options)
        done.append("contract")
        check_needs_enforced(cls, options)
        done.append("needs_enforced")
        if efficacy:
            check_efficacy(cls, efficacy_options)
            done.append("efficacy")
        return done
    finally:
        torch.set_num_threads(threads)
