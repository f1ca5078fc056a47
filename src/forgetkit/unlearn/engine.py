"""The Formulation-1 engine (FaLW paper): one training loop for gradient-based unlearning.

    min_θ  α·Σ_{i∈D_f} w_i·ℓ_forget(x_i; θ) + β·L_retain(D_r; θ) + λ·R(θ, θ_o),   only coordinates in M move

Named methods (``forgetkit.methods``) are presets of the parts passed to :func:`run_engine`.
Data stays resident on the device; on CUDA the forward pass runs under bf16 autocast with
channels-last images. Masked coordinates are restored after each step and their momentum zeroed,
so they stay bit-for-bit fixed under weight decay and momentum.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn

from ..data.base import as_float
from .context import UnlearnContext
from .masks import Mask
from .objectives import Batch, ForgetObjective, RetainObjective
from .regularisers import Regulariser
from .weightings import Uniform, Weighting

MIXINGS = ("mixed", "sequential", "paired", "forget_only", "retain_only")
SCHEDULES = ("constant", "cosine", "step")


class DivergenceError(RuntimeError):
    """Unlearning produced a non-finite loss or exploding weights; carries the step."""

    def __init__(self, reason: str, step: int):
        super().__init__(f"diverged at step {step}: {reason}")
        self.reason, self.step = reason, step


@dataclass
class LoopConfig:
    """Optimiser and batching of one engine run (SGD as in the SalUn/FaLW code)."""

    epochs: int = 10
    """passes over the data that drives the loop (see ``mixing``)"""
    lr: float = 0.01
    """SGD learning rate"""
    batch_size: int = 256
    """samples per step (per split for ``paired``)"""
    momentum: float = 0.9
    """SGD momentum"""
    weight_decay: float = 5e-4
    """SGD weight decay (applied to every method, GA included, as in the SalUn code)"""
    schedule: str = "constant"
    """learning-rate schedule: constant, cosine (per step) or step (per epoch)"""
    milestones: tuple[int, ...] = ()
    """epochs at which the ``step`` schedule multiplies the rate by ``gamma``"""
    gamma: float = 0.1
    """decay factor of the ``step`` schedule"""
    mixing: str = "mixed"
    """how forget and retain batches meet: mixed (one shuffled union, loss averaged over the
    merged batch, FaLW Algorithm 1), sequential (all forget batches then all retain batches,
    SalUn RL), paired (each retain batch with the next forget batch, NegGrad+), forget_only, retain_only"""
    forget_weight: float = 1.0
    """α: multiplier of the forget term"""
    retain_weight: float = 1.0
    """β: multiplier of the retain term"""
    forget_epochs: int | None = None
    """apply the forget term only in the first k epochs (SCRUB's max steps); None = every epoch"""
    train_mode: bool = True
    """BatchNorm/Dropout in train mode (SalUn) or eval mode (SFRon's GA)"""
    grad_clip: float | None = None
    """clip the gradient norm to this value (SFRon's GA uses 0.1)"""
    max_param_norm: float = 1e6
    """stop as diverged if any parameter's norm exceeds this"""

    def __post_init__(self):
        if self.mixing not in MIXINGS:
            raise ValueError(f"mixing must be one of {MIXINGS}, got {self.mixing!r}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        if self.epochs < 0 or self.batch_size < 1 or self.lr < 0:
            raise ValueError("epochs must be >= 0, batch_size >= 1 and lr >= 0")


@dataclass
class Parts:
    """The swappable parts of Formulation 1."""

    forget: ForgetObjective | None = None
    retain: RetainObjective | None = None
    weighting: Weighting = field(default_factory=Uniform)
    regulariser: Regulariser | None = None
    mask: Mask | None = None


@dataclass
class EngineLog:
    """Per-epoch history (mean loss, weight statistics) and the number of optimiser steps."""

    epochs: list[dict] = field(default_factory=list)
    steps: int = 0
    optimizer: torch.optim.Optimizer | None = None
    """the optimiser used; pass it to the next call to carry momentum across alternating stretches"""


def _batches(n: int, batch_size: int, gen: torch.Generator) -> list[torch.Tensor]:
    return list(torch.randperm(n, generator=gen).split(batch_size)) if n else []


def _plan(mixing: str, n_f: int, n_r: int, bs: int, gen, use_forget: bool):
    """One epoch of (forget positions, retain positions) pairs; either may be empty."""
    empty = torch.empty(0, dtype=torch.long)
    if not use_forget:
        n_f = 0
    if mixing == "forget_only":
        return [(b, empty) for b in _batches(n_f, bs, gen)]
    if mixing == "retain_only":
        return [(empty, b) for b in _batches(n_r, bs, gen)]
    if mixing == "sequential":
        return [(b, empty) for b in _batches(n_f, bs, gen)] + [(empty, b) for b in _batches(n_r, bs, gen)]
    if mixing == "paired":
        r = _batches(n_r, bs, gen)
        if not n_f:
            return [(empty, b) for b in r]
        order = torch.randperm(n_f, generator=gen)
        reps = math.ceil(len(r) * bs / n_f) + 1
        cyc = torch.cat([order] * reps)
        return [(cyc[i * bs:(i + 1) * bs], b) for i, b in enumerate(r)]
    # mixed: one shuffled union; ids >= n_f are retain positions
    out = []
    for b in _batches(n_f + n_r, bs, gen):
        out.append((b[b < n_f], b[b >= n_f] - n_f))
    return out


def _steps_per_epoch(mixing: str, n_f: int, n_r: int, bs: int) -> int:
    """Number of batches :func:`_plan` yields for one epoch, without drawing permutations."""
    batches = lambda n: -(-n // bs)  # noqa: E731
    return {"forget_only": batches(n_f), "retain_only": batches(n_r), "sequential": batches(n_f) + batches(n_r),
            "paired": batches(n_r), "mixed": batches(n_f + n_r)}[mixing]


def _lr_at(cfg: LoopConfig, epoch: int, step: int, steps_per_epoch: int) -> float:
    if cfg.schedule == "cosine":
        total = max(1, cfg.epochs * steps_per_epoch)
        return 0.5 * cfg.lr * (1 + math.cos(math.pi * min(step, total) / total))
    if cfg.schedule == "step":
        return cfg.lr * cfg.gamma ** sum(epoch >= m for m in cfg.milestones)
    return cfg.lr


def run_engine(model: nn.Module, ctx: UnlearnContext, parts: Parts, cfg: LoopConfig,
               progress: Callable[[int, int], None] | None = None,
               optimizer: torch.optim.Optimizer | None = None) -> EngineLog:
    """Unlearn ``model`` in place; returns the log. Raises :class:`DivergenceError` on NaN/Inf.

    ``optimizer``: an SGD optimiser over ``model``'s parameters from an earlier call (its momentum
    carries over, as in methods that alternate forget and retain stretches); default: a new one.
    """
    dev = ctx.device
    model.to(dev)
    if dev.type == "cuda":
        model.to(memory_format=torch.channels_last)
    needs_retain = parts.retain is not None and cfg.mixing != "forget_only"
    if needs_retain and ctx.retain is None:
        raise ValueError("this configuration has a retain objective but no retain set was given")
    forget = ctx.forget.to(dev)
    retain = ctx.retain.to(dev) if needs_retain else None
    n_f = len(forget) if parts.forget is not None else 0
    n_r = len(retain) if retain is not None else 0
    if parts.forget is not None:
        parts.forget.setup(ctx)
    parts.weighting.setup(ctx, model)
    if parts.regulariser is not None:
        parts.regulariser.setup(model, ctx)

    params = [p for p in model.parameters() if p.requires_grad]
    names = {id(p): n for n, p in model.named_parameters()}
    opt = optimizer or torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    masked = []
    if parts.mask is not None:
        for p in params:
            m = parts.mask.get(names[id(p)])
            if m is None:
                raise ValueError(f"mask has no entry for parameter {names[id(p)]!r}")
            if m.shape != p.shape:
                raise ValueError(f"mask for {names[id(p)]!r} has shape {tuple(m.shape)}, parameter {tuple(p.shape)}")
            masked.append((p, m.to(dev)))
    frozen = [(p, m, p.detach().clone()) for p, m in masked]

    gen = ctx.generator(1)
    log = EngineLog(optimizer=opt)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if dev.type == "cuda" else _NoCast()
    steps_per_epoch = _steps_per_epoch(cfg.mixing, n_f, n_r, cfg.batch_size) or 1
    total_steps = cfg.epochs * steps_per_epoch
    for epoch in range(cfg.epochs):
        model.train(cfg.train_mode)
        use_forget = cfg.forget_epochs is None or epoch < cfg.forget_epochs
        loss_sum, n_steps = torch.zeros((), device=dev), 0  # summed on the device: no per-step sync
        for f_pos, r_pos in _plan(cfg.mixing, n_f, n_r, cfg.batch_size, gen, use_forget):
            for g in opt.param_groups:
                g["lr"] = _lr_at(cfg, epoch, log.steps, steps_per_epoch)
            parts.weighting.before_step(model, ctx, log.steps)
            model.train(cfg.train_mode)
            f_pos, r_pos = f_pos.to(dev), r_pos.to(dev)
            xs = [forget.x[f_pos]] if len(f_pos) else []
            if len(r_pos):
                xs.append(retain.x[r_pos])
            x = as_float(torch.cat(xs) if len(xs) > 1 else xs[0])
            if dev.type == "cuda" and x.dim() == 4:
                x = x.contiguous(memory_format=torch.channels_last)
            with autocast:
                logits = model(x)
            nf = len(f_pos)
            loss = _batch_loss(cfg, parts, ctx, logits, x, nf, forget, retain, f_pos, r_pos)
            if parts.regulariser is not None:
                loss = loss + parts.regulariser(model, log.steps / max(1, total_steps))
            if not torch.isfinite(loss):
                raise DivergenceError(f"loss is {loss.item()}", log.steps)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            for p, m in masked:
                if p.grad is not None:
                    p.grad.mul_(m)
            if cfg.grad_clip is not None:
                nn.utils.clip_grad_norm_(params, cfg.grad_clip)
            opt.step()
            for p, m, p0 in frozen:
                p.data.copy_(torch.where(m, p.data, p0))
                buf = opt.state.get(p, {}).get("momentum_buffer")
                if buf is not None:
                    buf.mul_(m)
            loss_sum += loss.detach()
            n_steps += 1
            log.steps += 1
            if progress is not None:
                progress(log.steps, total_steps)
        biggest = max((p.detach().norm().item() for p in params), default=0.0)
        if not math.isfinite(biggest) or biggest > cfg.max_param_norm:
            raise DivergenceError(f"parameter norm {biggest:.3g} exceeds {cfg.max_param_norm:g}", log.steps)
        log.epochs.append({"epoch": epoch, "loss": loss_sum.item() / max(1, n_steps), **parts.weighting.end_epoch(epoch)})
    model.eval()
    return log


def _batch_loss(cfg, parts: Parts, ctx, logits, x, nf, forget, retain, f_pos, r_pos) -> torch.Tensor:
    """α·Σw·ℓ_f + β·Σℓ_r, normalised over the merged batch (mixed) or per term (other mixings)."""
    terms_f = terms_r = None
    if nf:
        fb = Batch(x[:nf], forget.y[f_pos], f_pos)
        lf = parts.forget(logits[:nf], fb, ctx)
        w = parts.weighting(logits[:nf].detach(), fb, ctx).detach()
        terms_f = cfg.forget_weight * w * lf
    if len(r_pos):
        rb = Batch(x[nf:], retain.y[r_pos], r_pos)
        terms_r = cfg.retain_weight * parts.retain(logits[nf:], rb, ctx)
    if cfg.mixing == "mixed":
        parts_ = [t for t in (terms_f, terms_r) if t is not None]
        return torch.cat(parts_).sum() / sum(len(t) for t in parts_)
    loss = logits.new_zeros((), dtype=torch.float32)
    if terms_f is not None:
        loss = loss + terms_f.mean()
    if terms_r is not None:
        loss = loss + terms_r.mean()
    return loss


class _NoCast:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False
