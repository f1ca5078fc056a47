"""Method protocol, registry and the engine-preset base class.

A method is a dataclass whose fields are its hyper-parameters (explicit keywords with the
reference defaults) and whose class attributes declare what it needs. ``unlearn`` never mutates
the model it is given: it returns an unlearned copy and a dict of run information.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, fields
from typing import Any, Callable, ClassVar

from torch import nn

from ..registry import Registry
from ..unlearn.context import UnlearnContext
from ..unlearn.engine import LoopConfig, Parts, run_engine
from ..unlearn.weightings import Weighting

METHODS: Registry = Registry("method")

DATA_NEEDS = ("forget", "retain", "heldout")


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
    description: ClassVar[str] = ""
    """one line for ``forgetkit methods``"""

    def unlearn(self, model: nn.Module, ctx: UnlearnContext, weighting: Weighting | None = None,
                progress: Callable[[int, int], None] | None = None) -> tuple[nn.Module, dict[str, Any]]:
        raise NotImplementedError

    def params(self) -> dict[str, Any]:
        """Hyper-parameters as a plain dict (for the result store)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}  # type: ignore[arg-type]


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
    if weighting is not None and type(weighting).__name__ != "Uniform" and not method.supports_weighting:
        raise ValueError(f"method {name!r} has no per-sample forget loss, so it cannot take a weighting")


@dataclass
class EngineMethod(Method):
    """A named preset of the Formulation-1 engine; subclasses define :meth:`parts`."""

    epochs: int = 10
    """unlearning epochs"""
    lr: float = 0.01
    """SGD learning rate"""
    batch_size: int = 256
    """mini-batch size"""
    momentum: float = 0.9
    """SGD momentum"""
    weight_decay: float = 5e-4
    """SGD weight decay"""
    schedule: str = "constant"
    """learning-rate schedule: constant, cosine or step"""

    mixing: ClassVar[str] = "mixed"

    def parts(self, model: nn.Module, ctx: UnlearnContext) -> Parts:
        raise NotImplementedError

    def loop(self) -> LoopConfig:
        return LoopConfig(epochs=self.epochs, lr=self.lr, batch_size=self.batch_size,
                          momentum=self.momentum, weight_decay=self.weight_decay,
                          schedule=self.schedule, mixing=self.mixing)

    def unlearn(self, model, ctx, weighting=None, progress=None):
        check_requirements(self, ctx, weighting)
        model = copy.deepcopy(model).to(ctx.device)
        parts = self.parts(model, ctx)
        if weighting is not None:
            parts.weighting = weighting
        log = run_engine(model, ctx, parts, self.loop(), progress)
        return model, {"history": log.epochs, "steps": log.steps}


def build_method(name: str, **options) -> Method:
    """Instantiate a registered method; unknown options are an error naming them."""
    cls = METHODS.get(name)
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(options) - known)
    if unknown:
        raise ValueError(f"method {name!r} has no option(s) {unknown}; options: {sorted(known)}")
    return cls(**options)
