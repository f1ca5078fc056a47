"""One declaration of optimiser settings, shared by training recipes, the engine and its methods.

:class:`Optimisation` holds what every gradient-based run needs (epochs, rate, batch size, the
optimiser and its learning-rate schedule) and checks the ranges once, so a bad value is refused
with the field's name wherever it comes from (a config file, a method option, the Python API).
"""
from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field, fields
from typing import Any

import torch

OPTIMIZERS = ("sgd", "adam", "adamw")
BUILTIN_SCHEDULES = ("constant", "cosine", "step")
SCHEDULE_PER = ("epoch", "step")
# Schedulers that need other schedulers, not keyword options, to be built.
_COMPOSITE = ("LRScheduler", "_LRScheduler", "SequentialLR", "ChainedScheduler")


def torch_schedulers() -> list[str]:
    """Names of ``torch.optim.lr_scheduler`` classes that can be built from keyword options."""
    mod = torch.optim.lr_scheduler
    base = getattr(mod, "LRScheduler", getattr(mod, "_LRScheduler", None))
    out = []
    for name in dir(mod):
        obj = getattr(mod, name)
        if name in _COMPOSITE or not isinstance(obj, type):
            continue
        if (base is not None and issubclass(obj, base)) or obj is mod.ReduceLROnPlateau:
            out.append(name)
    return sorted(out)


def _bad(name: str, value, need: str) -> ValueError:
    return ValueError(f"{name} must be {need}, got {value!r}")


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


@dataclass
class Optimisation:
    """Optimiser and schedule of one run (defaults: SGD as in the SalUn/FaLW code)."""

    epochs: int = 10
    """passes over the data that drives the loop (None only where a method derives it from an
    iteration budget: SFRon)"""
    lr: float = 0.01
    """(initial) learning rate"""
    batch_size: int = 256
    """samples per step"""
    momentum: float = 0.9
    """SGD momentum (adam/adamw use ``betas`` instead)"""
    weight_decay: float = 5e-4
    """weight decay (L2 in the gradient for sgd/adam, decoupled for adamw)"""
    optimizer: str = "sgd"
    """sgd, adam or adamw (torch.optim)"""
    betas: tuple[float, float] = (0.9, 0.999)
    """adam/adamw moment decay rates (torch's defaults)"""
    eps: float = 1e-8
    """adam/adamw denominator term (torch's default)"""
    schedule: str = "constant"
    """constant, cosine (to 0, per step), step (×``gamma`` at ``milestones``, per epoch), or the
    name of any ``torch.optim.lr_scheduler`` class (e.g. OneCycleLR) built with ``schedule_options``"""
    milestones: tuple[int, ...] = ()
    """epochs at which the ``step`` schedule multiplies the rate by ``gamma``"""
    gamma: float = 0.1
    """decay factor of the ``step`` schedule"""
    schedule_options: dict[str, Any] = field(default_factory=dict)
    """keyword options of a torch scheduler (e.g. {max_lr: 0.1, total_steps: 100} for OneCycleLR)"""
    schedule_per: str = "epoch"
    """when a torch scheduler steps: after every epoch or every step"""

    def __post_init__(self):
        self.check_optimisation()

    def check_optimisation(self) -> None:
        """Range checks; each error names the field and the accepted values."""
        if self.epochs is not None and (not _is_int(self.epochs) or self.epochs < 0):
            raise _bad("epochs", self.epochs, "an integer >= 0")
        if not _is_num(self.lr) or self.lr <= 0:
            raise _bad("lr", self.lr, "a number > 0")
        if not _is_int(self.batch_size) or self.batch_size < 1:
            raise _bad("batch_size", self.batch_size, "an integer >= 1")
        if not _is_num(self.momentum) or not 0 <= self.momentum < 1:
            raise _bad("momentum", self.momentum, "in [0, 1)")
        if not _is_num(self.weight_decay) or self.weight_decay < 0:
            raise _bad("weight_decay", self.weight_decay, "a number >= 0")
        if self.optimizer not in OPTIMIZERS:
            raise _bad("optimizer", self.optimizer, f"one of {OPTIMIZERS}")
        betas = tuple(self.betas) if isinstance(self.betas, (list, tuple)) else None
        if betas is None or len(betas) != 2 or not all(_is_num(b) and 0 <= b < 1 for b in betas):
            raise _bad("betas", self.betas, "two numbers in [0, 1)")
        self.betas = betas
        if not _is_num(self.eps) or self.eps <= 0:
            raise _bad("eps", self.eps, "a number > 0")
        if not isinstance(self.milestones, (list, tuple)) or not all(_is_int(m) and m >= 0 for m in self.milestones):
            raise _bad("milestones", self.milestones, "a list of integers >= 0")
        self.milestones = tuple(self.milestones)
        if not _is_num(self.gamma) or self.gamma <= 0:
            raise _bad("gamma", self.gamma, "a number > 0")
        if self.schedule_per not in SCHEDULE_PER:
            raise _bad("schedule_per", self.schedule_per, f"one of {SCHEDULE_PER}")
        if not isinstance(self.schedule_options, dict):
            raise _bad("schedule_options", self.schedule_options, "a mapping of keyword options")
        if self.schedule in BUILTIN_SCHEDULES:
            if self.schedule_options:
                raise ValueError(f"schedule_options are for torch schedulers; schedule {self.schedule!r} takes "
                                 f"none (got {sorted(self.schedule_options)}); the step schedule uses milestones and gamma")
            return
        known = torch_schedulers()
        if self.schedule not in known:
            raise _bad("schedule", self.schedule, f"one of {BUILTIN_SCHEDULES} or a torch.optim.lr_scheduler "
                       f"class ({', '.join(known)})")
        if self.schedule == "ReduceLROnPlateau" and self.schedule_per != "epoch":
            raise ValueError("schedule ReduceLROnPlateau steps on the epoch's mean loss: schedule_per must be 'epoch'")
        probe = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=self.lr)
        build_scheduler(self, probe)  # refuse bad options now, not after the first epoch

    def optimisation(self) -> dict[str, Any]:
        """The :class:`Optimisation` fields of this object, as keywords."""
        return {f.name: getattr(self, f.name) for f in fields(Optimisation)}


class _LoopOptimizer:
    """An optimiser as a plain loop over tensors, without ``torch.optim.Optimizer``.

    Why: constructing any torch.optim optimiser imports ``torch._dynamo`` (its ``add_param_group``,
    ``zero_grad`` and ``step`` are wrapped by ``torch._disable_dynamo``), about a second of CPU on a
    process's first call. ``param_groups`` (their ``lr`` is set by the built-in schedules) and
    ``state[p]`` (its buffers zeroed under a mask by the engine) are kept as torch keeps them.
    """

    def __init__(self, params, **group):
        params = list(params)
        if not params:
            raise ValueError("optimizer got an empty parameter list")
        self.param_groups = [{"params": params, **group}]
        self.state: dict = defaultdict(dict)

    def zero_grad(self, set_to_none: bool = True) -> None:
        for g in self.param_groups:
            for p in g["params"]:
                if p.grad is None:
                    continue
                if set_to_none:
                    p.grad = None
                else:
                    p.grad.detach_().zero_()

    @torch.no_grad()
    def step(self) -> None:
        for g in self.param_groups:
            for p in g["params"]:
                if p.grad is not None:
                    self._update(p, p.grad, self.state[p], g)

    def _update(self, p: torch.Tensor, grad: torch.Tensor, state: dict, g: dict) -> None:
        raise NotImplementedError


class LoopSGD(_LoopOptimizer):
    """SGD with momentum and weight decay: torch.optim.SGD's single-tensor update (the one it runs
    on CPU), step for step the same numbers."""

    def __init__(self, params, lr: float, momentum: float = 0.0, weight_decay: float = 0.0):
        super().__init__(params, lr=lr, momentum=momentum, weight_decay=weight_decay)

    def _update(self, p, grad, state, g):
        if g["weight_decay"] != 0:
            grad = grad.add(p, alpha=g["weight_decay"])
        if g["momentum"] != 0:
            buf = state.get("momentum_buffer")
            if buf is None:
                buf = state["momentum_buffer"] = grad.detach().clone()
            else:
                buf.mul_(g["momentum"]).add_(grad)
            grad = buf
        p.add_(grad, alpha=-g["lr"])


class LoopAdam(_LoopOptimizer):
    """Adam (L2 weight decay in the gradient) or, with ``decoupled``, AdamW: torch.optim's
    single-tensor update (the one it runs on CPU), step for step the same numbers."""

    def __init__(self, params, lr: float, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0, decoupled: bool = False):
        super().__init__(params, lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay, decoupled=decoupled)

    def _update(self, p, grad, state, g):
        if not state:
            state.update(step=0, exp_avg=torch.zeros_like(p, memory_format=torch.preserve_format),
                         exp_avg_sq=torch.zeros_like(p, memory_format=torch.preserve_format))
        (beta1, beta2), lr, wd = g["betas"], g["lr"], g["weight_decay"]
        state["step"] += 1
        if wd != 0:
            if g["decoupled"]:
                p.mul_(1 - lr * wd)
            else:
                grad = grad.add(p, alpha=wd)
        state["exp_avg"].lerp_(grad, 1 - beta1)
        state["exp_avg_sq"].mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        step = float(state["step"])
        step_size = lr / (1 - beta1 ** step)
        denom = (state["exp_avg_sq"].sqrt() / (1 - beta2 ** step) ** 0.5).add_(g["eps"])
        p.addcdiv_(state["exp_avg"], denom, value=-step_size)


def build_optimizer(params, opt: Optimisation):
    """The optimiser ``opt`` names, over ``params``. On CPU under a built-in schedule it is a plain
    loop (:class:`LoopSGD`, :class:`LoopAdam`: torch's update, without importing torch._dynamo);
    a torch scheduler needs a real ``torch.optim.Optimizer``, and on GPUs torch's multi-tensor
    kernels are faster."""
    params = list(params)
    loop = opt.schedule in BUILTIN_SCHEDULES and all(p.device.type == "cpu" for p in params)
    if opt.optimizer == "sgd":
        if loop:
            return LoopSGD(params, lr=opt.lr, momentum=opt.momentum, weight_decay=opt.weight_decay)
        return torch.optim.SGD(params, lr=opt.lr, momentum=opt.momentum, weight_decay=opt.weight_decay)
    if loop:
        return LoopAdam(params, lr=opt.lr, betas=opt.betas, eps=opt.eps, weight_decay=opt.weight_decay,
                        decoupled=opt.optimizer == "adamw")
    cls = torch.optim.Adam if opt.optimizer == "adam" else torch.optim.AdamW
    return cls(params, lr=opt.lr, betas=tuple(opt.betas), eps=opt.eps, weight_decay=opt.weight_decay)


def build_scheduler(opt: Optimisation, optimizer: torch.optim.Optimizer):
    """The torch scheduler ``opt.schedule`` names (None for the built-in schedules)."""
    if opt.schedule in BUILTIN_SCHEDULES:
        return None
    cls = getattr(torch.optim.lr_scheduler, opt.schedule)
    try:
        return cls(optimizer, **opt.schedule_options)
    except (TypeError, ValueError) as e:
        raise ValueError(f"bad schedule_options for schedule {opt.schedule!r}: {e}") from None


def cosine_decay(start: float, t: int, total: int) -> float:
    """start·(1 + cos(πt/T))/2: from ``start`` at t = 0 to 0 at t = T (held at 0 after)."""
    total = max(1, total)
    return start * (1 + math.cos(math.pi * min(t, total) / total)) / 2


def builtin_lr(opt: Optimisation, epoch: int, step: int, total_steps: int) -> float:
    """Rate of a built-in schedule: constant; cosine over ``total_steps`` (per step); step (per epoch)."""
    if opt.schedule == "cosine":
        return cosine_decay(opt.lr, step, total_steps)
    if opt.schedule == "step":
        return opt.lr * opt.gamma ** sum(epoch >= m for m in opt.milestones)
    return opt.lr
