"""Method protocol, registry and the engine-preset base class.

A method is a dataclass whose fields are its hyper-parameters (explicit keywords with the
reference defaults) and whose class attributes declare what it needs. ``unlearn`` is one template
for every method — check needs, copy the model, set the weighting, prepare, run, finish — so it
never mutates the model it is given and returns an unlearned copy and a dict of run information.
"""
from __future__ import annotations

import copy
from dataclasses import MISSING, dataclass, fields, is_dataclass
from typing import Any, Callable, ClassVar

import torch
from torch import nn

from ..registry import Registry
from ..unlearn.context import UnlearnContext
from ..unlearn.engine import AnyStop, LoopConfig, Parts, StopRule, run_engine
from ..unlearn.optim import Optimisation
from ..unlearn.weightings import Uniform, Weighting, is_uniform

METHODS: Registry = Registry("method")


class Method:
    """Base of every unlearner (engine presets and closed-form methods alike)."""

    needs: ClassVar[frozenset[str]] = frozenset({"forget"})
    """splits the method reads: subset of forget, retain, heldout"""
    supports_weighting: ClassVar[bool] = False
    """True when the forget loss is per-sample, so any weighting plugs in"""
    image_only: ClassVar[bool] = False
    """True when the method only makes sense for images (refuses tabular data)"""
    class_only: ClassVar[bool] = False
    """True when the method needs whole-class forget requests"""
    streams: ClassVar[bool] = True
    """True when the method reads its splits only in batches (the engine's steps, ``split.x[positions]``,
    ``split.x.split(n)``), so ``forgetkit.unlearn`` can stream a Dataset to it; False when it needs
    whole input tensors in memory (streaming is then refused, naming the method)"""
    description: ClassVar[str] = ""
    """one line for ``forgetkit methods``"""
    paper_name: ClassVar[str] = ""
    """the name reports show, spelled as the method's paper writes it (SalUn, NegGrad+); default: the registry key"""
    smoke_caps: ClassVar[dict[str, int | float]] = {}
    """upper bounds ``--smoke`` puts on options (a check that a preset runs, not a result)"""
    tune_space: ClassVar[dict[str, dict[str, Any]]] = {}
    """the declared search space of the leaderboard's equal tuning budget: lr and epochs (or the
    method's step count) and at most two key hyper-parameters of its own; each entry is
    ``{low, high[, log]}`` or ``{choices}`` as in a config's ``tune.space``"""

    def unlearn(self, model: nn.Module, ctx: UnlearnContext, weighting: Weighting | None = None,
                progress: Callable[[int, int], None] | None = None) -> tuple[nn.Module, dict[str, Any]]:
        """Check needs, copy the model, set the weighting, prepare, run, finish."""
        check_requirements(self, ctx, weighting)
        model = copy.deepcopy(model).to(ctx.device)
        weighting = self.default_weighting() if is_uniform(weighting) else weighting
        prepared = self.prepare(model, ctx, weighting)
        info = self.run(model, ctx, prepared, progress)
        return self.finish(model, ctx, prepared, info)

    def default_weighting(self) -> Weighting:
        """The weighting used when the caller gives none (or ``uniform``)."""
        return Uniform()

    def prepare(self, model: nn.Module, ctx: UnlearnContext, weighting: Weighting) -> Any:
        """Per-run state computed before the update (masks, targets, statistics); default: none."""
        return None

    def run(self, model: nn.Module, ctx: UnlearnContext, prepared: Any,
            progress: Callable[[int, int], None] | None) -> dict[str, Any]:
        """Update ``model`` (the copy) in place; returns the run information."""
        raise NotImplementedError

    def finish(self, model: nn.Module, ctx: UnlearnContext, prepared: Any,
               info: dict[str, Any]) -> tuple[nn.Module, dict[str, Any]]:
        """Undo preparation that must not outlive the run (hooks, widened heads); default: eval mode."""
        return model.eval(), info

    def params(self) -> dict[str, Any]:
        """Hyper-parameters as a plain dict (for the result store)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}  # type: ignore[arg-type]

    @classmethod
    def smoke_options(cls, options: dict[str, Any]) -> dict[str, Any]:
        """A copy of ``options`` with each of :attr:`smoke_caps` applied as min(given or default, cap)."""
        out = dict(options)
        defaults = {f.name: f.default for f in fields(cls)} if is_dataclass(cls) else {}
        for name, cap in cls.smoke_caps.items():
            given = out.get(name, defaults.get(name, MISSING))
            out[name] = cap if given is None or given is MISSING else min(given, cap)
        return out


def check_requirements(method: Method, ctx: UnlearnContext, weighting: Weighting | None) -> None:
    """Refuse a run that lacks what the method (or the weighting) needs, with a clear error."""
    name = getattr(method, "registry_name", type(method).__name__)
    needs = set(method.needs) | (set(weighting.needs) if weighting is not None else set())
    for split in ("retain", "heldout"):
        s = getattr(ctx, split)
        if split in needs and (s is None or len(s) == 0):
            who = name if split in method.needs else f"weighting {getattr(weighting, 'registry_name', '')!r}"
            raise ValueError(f"{who} needs a {split} set, but none was given")
    if method.image_only and ctx.kind != "image":
        raise ValueError(f"method {name!r} works on images only; this dataset is {ctx.kind}")
    if method.class_only and not ctx.forget_classes:
        raise ValueError(f"method {name!r} forgets whole classes; give a class forget request, "
                         "not a random or long-tailed one")
    if not is_uniform(weighting) and not method.supports_weighting:
        raise ValueError(f"method {name!r} has no per-sample forget loss, so it cannot take a weighting")


@dataclass
class EnginePlan:
    """What :meth:`EngineMethod.prepare` hands to the engine: the parts, the loop and its context."""

    parts: Parts
    loop: LoopConfig
    ctx: UnlearnContext
    extra: dict[str, Any]
    """method-specific state for :meth:`~Method.finish` (e.g. hooks to remove)"""


@dataclass
class EngineMethod(Optimisation, Method):
    """A named preset of the Formulation-1 engine; subclasses define :meth:`parts`.

    The optimiser fields (epochs, lr, batch_size, momentum, weight_decay, optimizer, betas, eps,
    schedule, milestones, gamma, schedule_options, schedule_per) come from :class:`Optimisation`.
    """

    stop: dict | None = None
    """stop rule, e.g. {when: indistinguishable, every: 50, ...} (``forgetkit.unlearn.stopping``); None: run to the end"""

    mixing: ClassVar[str] = "mixed"
    smoke_caps: ClassVar[dict[str, int | float]] = {"epochs": 1}

    def __post_init__(self):
        super().__post_init__()
        if self.stop is not None:
            if not isinstance(self.stop, dict) or "when" not in self.stop:
                raise ValueError(f"stop must be a mapping with a 'when' key naming the rule, got {self.stop!r}")
            self.stop_rule()  # refuse an unknown rule or bad options now, not mid-sweep

    def parts(self, model: nn.Module, ctx: UnlearnContext) -> Parts:
        raise NotImplementedError

    def loop(self) -> LoopConfig:
        return LoopConfig(**self.optimisation(), mixing=self.mixing)

    def stop_rule(self) -> StopRule | None:
        """The rule built from the ``stop`` option (None without one)."""
        if self.stop is None:
            return None
        from ..unlearn.stopping import build_stop_rule

        options = dict(self.stop)
        return build_stop_rule(options.pop("when"), **options)

    def prepare(self, model, ctx, weighting):
        return self.plan(self.parts(model, ctx), ctx, weighting)

    def plan(self, parts: Parts, ctx: UnlearnContext, weighting: Weighting) -> EnginePlan:
        """The engine run of ``parts`` on ``ctx``: the weighting set, the stop rules combined."""
        parts.weighting = weighting
        own, asked = parts.stop, self.stop_rule()  # the method's own rule and the caller's
        parts.stop = AnyStop(own, asked) if own is not None and asked is not None else own or asked
        return EnginePlan(parts=parts, loop=self.loop(), ctx=ctx, extra={})

    def run(self, model, ctx, prepared: EnginePlan, progress):
        log = run_engine(model, prepared.ctx, prepared.parts, prepared.loop, progress)
        return {"history": log.epochs, "steps": log.steps, "stopped_at": log.stopped_at}


def split_accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int) -> float:
    """Eval-mode top-1 accuracy in [0, 1] on float inputs ``x`` (restoring the caller's mode);
    what methods' own stop criteria read (L2UL, SCAR)."""
    mode = model.training
    model.eval()
    with torch.no_grad():
        hits = sum((model(x[i:i + batch_size]).argmax(1) == y[i:i + batch_size]).sum().item()
                   for i in range(0, len(x), batch_size))
    model.train(mode)
    return hits / max(1, len(y))


def build_method(name: str, **options) -> Method:
    """Instantiate a registered method; unknown options are an error naming them."""
    cls = METHODS.get(name)
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(options) - known)
    if unknown:
        raise ValueError(f"method {name!r} has no option(s) {unknown}; options: {sorted(known)}")
    return cls(**options)
