"""The Formulation-1 engine (FaLW paper): one training loop for gradient-based unlearning.

    min_θ  α·Σ_{i∈D_f} w_i·ℓ_forget(x_i; θ) + β·L_retain(D_r; θ) + λ·R(θ, θ_o),   only coordinates in M move

Named methods (``forgetkit.methods``) are presets of the parts passed to :func:`run_engine`.
Tensor splits stay resident on the device (the fast path); a split streamed from a ``Dataset``
(:class:`~.streaming.StreamSplit`) is read batch by batch, transforms applied at every read, in
the order the same plan gives the resident path. On CUDA the forward pass runs under bf16
autocast with channels-last images. Masked coordinates are restored after each masked step and their optimiser
state (momentum, Adam moments) zeroed, so they stay bit-for-bit fixed under weight decay and momentum.
Norm layers (BatchNorm and the like) inside modules whose parameters are all frozen
(``requires_grad=False``) stay in eval mode, so their running statistics do not move: frozen stays
frozen, unless ``ctx.update_frozen_stats`` asks otherwise. A :class:`StopRule` may end a run early; the optimiser (SGD, Adam, AdamW) and the learning-rate
schedule (built-in or any ``torch.optim.lr_scheduler``) come from :class:`~.optim.Optimisation`.
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
from .optim import Optimisation, build_optimizer, build_scheduler, builtin_lr, cosine_decay
from .regularisers import Regulariser
from .streaming import StepReader
from .weightings import Uniform, Weighting

MIXINGS = ("mixed", "sequential", "paired", "forget_only", "retain_only", "alternating", "forget_led")
FORGET_WEIGHT_SCHEDULES = ("constant", "cosine")
_STATE_KEYS = ("momentum_buffer", "exp_avg", "exp_avg_sq", "max_exp_avg_sq")


class DivergenceError(RuntimeError):
    """Unlearning produced a non-finite loss or exploding weights; carries the step."""

    def __init__(self, reason: str, step: int):
        super().__init__(f"diverged at step {step}: {reason}")
        self.reason, self.step = reason, step


@dataclass
class LoopConfig(Optimisation):
    """Optimiser, schedule (inherited from :class:`Optimisation`) and batching of one engine run."""

    mixing: str = "mixed"
    """how forget and retain batches meet: mixed (one shuffled union, loss averaged over the
    merged batch, FaLW Algorithm 1), sequential (all forget batches then all retain batches,
    SalUn RL), paired (each retain batch with the next forget batch, NegGrad+), forget_only,
    retain_only, alternating (one retain step per iteration, preceded by a forget step every
    ``forget_every``-th iteration, both from endless reshuffled streams; the mask, the gradient
    clip and the weighting act on forget steps only; SFRon) or forget_led (each forget batch
    ``forget_repeats`` times in a row, each time with the next batch of an endless reshuffled
    retain stream; SCAR)"""
    forget_weight: float = 1.0
    """α: multiplier of the forget term"""
    retain_weight: float = 1.0
    """β: multiplier of the retain term"""
    forget_weight_schedule: str = "constant"
    """constant α, or cosine: α_t = α·(1 + cos(πt/T))/2 over the run's iterations (SFRon)"""
    forget_epochs: int | None = None
    """apply the forget term only in the first k epochs (SCRUB's max steps); None = every epoch"""
    forget_every: int = 1
    """alternating: a forget step before every k-th retain step (SFRon's ``forget_freq``)"""
    forget_repeats: int = 1
    """forget_led: steps per forget batch (SCAR: 1 + surrogate batches per forget batch)"""
    iterations: int | None = None
    """end the run after this many iterations (an iteration is one step; in alternating mixing one
    retain step and the forget step before it); None: ``epochs`` full epochs"""
    train_mode: bool = True
    """BatchNorm/Dropout in train mode (SalUn) or eval mode (SFRon's GA)"""
    separate_forward: bool = False
    """forward forget and retain rows of a step separately (BatchNorm statistics per split, SCAR)
    instead of as one merged batch"""
    grad_clip: float | None = None
    """clip the gradient norm to this value (SFRon's GA uses 0.1)"""
    max_param_norm: float = 1e6
    """stop as diverged if any parameter's norm exceeds this"""

    def __post_init__(self):
        super().__post_init__()
        if self.epochs is None:
            raise ValueError("epochs must be an integer >= 0, got None")
        if self.mixing not in MIXINGS:
            raise ValueError(f"mixing must be one of {MIXINGS}, got {self.mixing!r}")
        if self.forget_weight_schedule not in FORGET_WEIGHT_SCHEDULES:
            raise ValueError(f"forget_weight_schedule must be one of {FORGET_WEIGHT_SCHEDULES}, "
                             f"got {self.forget_weight_schedule!r}")
        for name in ("forget_every", "forget_repeats"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {getattr(self, name)!r}")
        if self.iterations is not None and (not isinstance(self.iterations, int) or self.iterations < 1):
            raise ValueError(f"iterations must be None or an integer >= 1, got {self.iterations!r}")


class StopRule:
    """Decides during a run that unlearning has done enough."""

    every: int = 1
    """check every ``every`` optimiser steps"""

    def setup(self, model: nn.Module, ctx: UnlearnContext) -> None:
        """Prepare per-run state (e.g. reference statistics); called once before the first step."""

    def should_stop(self, model: nn.Module, ctx: UnlearnContext, step: int) -> bool:
        """True ends the run after optimiser step ``step`` (1-based). Switching to eval mode and
        ``torch.no_grad`` is the rule's business; the engine restores train mode afterwards."""
        raise NotImplementedError


class AnyStop(StopRule):
    """Stops when any of its rules does, each checked on its own ``every`` (all asked, none skipped)."""

    def __init__(self, *rules: StopRule):
        self.rules = [r for r in rules if r is not None]
        self.every = math.gcd(*[r.every for r in self.rules]) if self.rules else 1

    def setup(self, model, ctx):
        for r in self.rules:
            r.setup(model, ctx)

    def should_stop(self, model, ctx, step):
        votes = [r.should_stop(model, ctx, step) for r in self.rules if step % r.every == 0]  # every rule keeps its log
        return any(votes)


@dataclass
class Parts:
    """The swappable parts of Formulation 1."""

    forget: ForgetObjective | None = None
    retain: RetainObjective | None = None
    weighting: Weighting = field(default_factory=Uniform)
    regulariser: Regulariser | None = None
    mask: Mask | None = None
    stop: StopRule | None = None
    """ends the run early when it says so (checked every ``stop.every`` steps)"""


@dataclass
class EngineLog:
    """Per-epoch history (mean loss, weight statistics), optimiser steps and where a stop rule ended it."""

    epochs: list[dict] = field(default_factory=list)
    steps: int = 0
    stopped_at: int | None = None
    """the optimiser step after which the stop rule ended the run; None if it ran to the end"""


def _batches(n: int, batch_size: int, gen: torch.Generator) -> list[torch.Tensor]:
    """One shuffled pass in batches of ``batch_size``; a last batch of a single sample is merged into
    the one before it (BatchNorm cannot normalise one sample in train mode, and torch would raise)."""
    batches = list(torch.randperm(n, generator=gen).split(batch_size)) if n else []
    if batch_size > 1 and len(batches) > 1 and len(batches[-1]) == 1:  # batch_size 1 is asked for
        batches[-2:] = [torch.cat(batches[-2:])]
    return batches


class _Stream:
    """Endless reshuffled passes over n positions, taken ``k`` at a time (cycling loaders)."""

    def __init__(self, n: int, gen: torch.Generator):
        self.n, self.gen, self.buf = n, gen, torch.empty(0, dtype=torch.long)

    def take(self, k: int) -> torch.Tensor:
        while len(self.buf) < k:
            self.buf = torch.cat([self.buf, torch.randperm(self.n, generator=self.gen)])
        out, self.buf = self.buf[:k], self.buf[k:]
        return out


class _BatchStream:
    """Endless reshuffled passes over n positions, one batch at a time (the last of a pass may be short)."""

    def __init__(self, n: int, bs: int, gen: torch.Generator):
        self.n, self.bs, self.gen, self.queue = n, bs, gen, []

    def next(self) -> torch.Tensor:
        if not self.queue:
            self.queue = _batches(self.n, self.bs, self.gen)
        return self.queue.pop(0) if self.queue else torch.empty(0, dtype=torch.long)


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
    def batches(n: int) -> int:  # as _batches: a trailing single sample joins the batch before it
        return -(-n // bs) - (n > bs and n % bs == 1)

    return {"forget_only": batches(n_f), "retain_only": batches(n_r), "sequential": batches(n_f) + batches(n_r),
            "paired": batches(n_r), "mixed": batches(n_f + n_r)}[mixing]


class _Planner:
    """Yields each epoch's steps as (forget positions, retain positions, iteration index)."""

    def __init__(self, cfg: LoopConfig, n_f: int, n_r: int, gen: torch.Generator):
        self.cfg, self.n_f, self.n_r, self.gen = cfg, n_f, n_r, gen
        bs = cfg.batch_size
        batches = lambda n: -(-n // bs)  # noqa: E731
        if cfg.mixing == "alternating":
            self.per_epoch = batches(n_r)
            self.f_stream, self.r_stream = _Stream(n_f, gen), _Stream(n_r, gen)
        elif cfg.mixing == "forget_led":
            self.per_epoch = batches(n_f) * cfg.forget_repeats
            self.r_stream = _BatchStream(n_r, bs, gen)
        else:
            self.per_epoch = _steps_per_epoch(cfg.mixing, n_f, n_r, bs)
        self.per_epoch = self.per_epoch or 1
        full = cfg.epochs * self.per_epoch
        self.total_iterations = min(full, cfg.iterations) if cfg.iterations is not None else full

    def total_steps(self) -> int:
        """Optimiser steps of the whole run (for progress reports)."""
        if self.cfg.mixing != "alternating" or not self.n_f:
            return self.total_iterations
        return self.total_iterations + math.ceil(self.total_iterations / self.cfg.forget_every)

    def epoch(self, epoch: int, use_forget: bool):
        cfg, empty = self.cfg, torch.empty(0, dtype=torch.long)
        first = epoch * self.per_epoch
        if cfg.mixing == "alternating":
            bf, br = min(cfg.batch_size, self.n_f), min(cfg.batch_size, self.n_r)
            out = []
            for it in range(first, first + self.per_epoch):
                if use_forget and self.n_f and it % cfg.forget_every == 0:
                    out.append((self.f_stream.take(bf), empty, it))
                out.append((empty, self.r_stream.take(br), it))
            return out
        if cfg.mixing == "forget_led":
            n_f = self.n_f if use_forget else 0
            steps = [(f, self.r_stream.next() if self.n_r else empty)
                     for f in _batches(n_f, cfg.batch_size, self.gen) for _ in range(cfg.forget_repeats)]
        else:
            steps = _plan(cfg.mixing, self.n_f, self.n_r, cfg.batch_size, self.gen, use_forget)
        return [(f, r, first + i) for i, (f, r) in enumerate(steps)]


def frozen_norms(model: nn.Module) -> list[nn.Module]:
    """Norm layers with running statistics whose parameters are all frozen: their own, or (a layer
    without affine parameters) those of the closest enclosing module that has any."""
    out = []

    def visit(module: nn.Module, frozen_above: bool | None) -> None:
        own = list(module.parameters(recurse=False))
        params = list(module.parameters())
        frozen = (not any(p.requires_grad for p in params)) if params else frozen_above
        if isinstance(module, nn.modules.batchnorm._NormBase) and module.track_running_stats:
            if (not any(p.requires_grad for p in own)) if own else frozen:
                out.append(module)
        for child in module.children():
            visit(child, frozen)

    visit(model, None)
    return out


def set_train_mode(model: nn.Module, train: bool, keep: list[nn.Module]) -> None:
    """``model.train(train)`` with the norm layers of ``keep`` in eval mode (their statistics kept)."""
    model.train(train)
    for m in keep:
        m.eval()


def _lr_at(cfg: Optimisation, epoch: int, step: int, steps_per_epoch: int) -> float:
    """Rate of a built-in schedule at ``step`` of a run of ``cfg.epochs`` × ``steps_per_epoch`` steps."""
    return builtin_lr(cfg, epoch, step, cfg.epochs * steps_per_epoch)


def _forget_weight(cfg: LoopConfig, it: int, total: int) -> float:
    if cfg.forget_weight_schedule == "cosine":
        return cosine_decay(cfg.forget_weight, it, total)
    return cfg.forget_weight


def run_engine(model: nn.Module, ctx: UnlearnContext, parts: Parts, cfg: LoopConfig,
               progress: Callable[[int, int], None] | None = None) -> EngineLog:
    """Unlearn ``model`` in place; returns the log. Raises :class:`DivergenceError` on NaN/Inf.

    ``progress(step, total)`` is called after each optimiser step; a progress object that also has
    ``epoch_end(model, ctx, epoch, record)`` is called after each epoch with that epoch's log record.
    """
    dev = ctx.device
    model.to(dev)
    if dev.type == "cuda":
        model.to(memory_format=torch.channels_last)
    needs_retain = parts.retain is not None and cfg.mixing != "forget_only"
    if needs_retain and ctx.retain is None:
        raise ValueError("this configuration has a retain objective but no retain set was given")
    if cfg.mixing == "alternating" and not needs_retain:
        raise ValueError("alternating mixing needs a retain objective and a retain set")
    forget = ctx.forget.to(dev)
    retain = ctx.retain.to(dev) if needs_retain else None
    n_f = len(forget) if parts.forget is not None else 0
    n_r = len(retain) if retain is not None else 0
    if parts.forget is not None:
        parts.forget.setup(ctx)
    parts.weighting.setup(ctx, model)
    if parts.regulariser is not None:
        parts.regulariser.setup(model, ctx)
    if parts.stop is not None:
        parts.stop.setup(model, ctx)

    params = [p for p in model.parameters() if p.requires_grad]
    names = {id(p): n for n, p in model.named_parameters()}
    opt = build_optimizer(params, cfg)
    sched = build_scheduler(cfg, opt)
    masked = []
    if parts.mask is not None:
        for p in params:
            m = parts.mask.get(names[id(p)])
            if m is None:
                raise ValueError(f"mask has no entry for parameter {names[id(p)]!r}")
            if m.shape != p.shape:
                raise ValueError(f"mask for {names[id(p)]!r} has shape {tuple(m.shape)}, parameter {tuple(p.shape)}")
            masked.append((p, m.to(dev)))
    alternating = cfg.mixing == "alternating"

    gen = ctx.generator(1)
    log = EngineLog()
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if dev.type == "cuda" else _NoCast()
    planner = _Planner(cfg, n_f, n_r, gen)
    reader = StepReader(forget, retain, ctx.seed)
    total_it, total_steps = planner.total_iterations, planner.total_steps()
    frozen = [p.detach().clone() for p, _ in masked] if not alternating else None
    keep = [] if ctx.update_frozen_stats else frozen_norms(model)
    sched_it = 0
    for epoch in range(cfg.epochs):
        if (epoch * planner.per_epoch if alternating else log.steps) >= total_it > 0:
            break
        set_train_mode(model, cfg.train_mode, keep)
        use_forget = cfg.forget_epochs is None or epoch < cfg.forget_epochs
        loss_sum, n_steps = torch.zeros((), device=dev), 0  # summed on the device: no per-step sync
        steps = planner.epoch(epoch, use_forget)
        # steps past the run's end are never read (a streamed split would read them for nothing)
        steps = [s for s in steps if s[2] < total_it] if alternating else steps[:max(0, total_it - log.steps)]
        for (f_pos, r_pos, it), (x_f, x_r) in zip(steps, reader.epoch(steps, epoch)):
            it = it if alternating else log.steps  # iteration = step, except in alternating mixing
            if it >= total_it:
                break
            if sched is None:
                for g in opt.param_groups:
                    g["lr"] = builtin_lr(cfg, epoch, it, total_it)
            elif cfg.schedule_per == "step":
                for _ in range(it - sched_it):
                    sched.step()
                sched_it = it
            nf = len(f_pos)
            if nf or not alternating:
                parts.weighting.before_step(model, ctx, log.steps)
            set_train_mode(model, cfg.train_mode, keep)
            f_pos, r_pos = f_pos.to(dev), r_pos.to(dev)
            xs = [as_float(x_f)] if nf else []  # each split scaled on its own: their dtypes may differ
            if len(r_pos):
                xs.append(as_float(x_r))
            x = torch.cat(xs) if len(xs) > 1 else xs[0]
            if dev.type == "cuda" and x.dim() == 4:
                x = x.contiguous(memory_format=torch.channels_last)
            with autocast:
                if cfg.separate_forward and nf and len(r_pos):
                    logits = torch.cat([model(x[:nf]), model(x[nf:])])
                else:
                    logits = model(x)
            loss = _batch_loss(cfg, parts, ctx, logits, x, nf, forget, retain, f_pos, r_pos,
                               _forget_weight(cfg, it, total_it))
            if parts.regulariser is not None:
                loss = loss + parts.regulariser(model, it / max(1, total_it))
            if not torch.isfinite(loss):
                raise DivergenceError(f"loss is {loss.item()}", log.steps)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            step_masked = masked if (nf or not alternating) else []
            for p, m in step_masked:
                if p.grad is not None:
                    p.grad.mul_(m)
            if cfg.grad_clip is not None and (nf or not alternating):
                nn.utils.clip_grad_norm_(params, cfg.grad_clip)
            before = frozen if frozen is not None else [p.detach().clone() for p, _ in step_masked]
            opt.step()
            for (p, m), p0 in zip(step_masked, before):
                p.data.copy_(torch.where(m, p.data, p0))
                for key in _STATE_KEYS:
                    buf = opt.state.get(p, {}).get(key)
                    if torch.is_tensor(buf) and buf.shape == m.shape:
                        buf.mul_(m)
            loss_sum += loss.detach()
            n_steps += 1
            log.steps += 1
            if progress is not None:
                progress(log.steps, total_steps)
            if parts.stop is not None and log.steps % parts.stop.every == 0:
                mode = model.training
                stop = parts.stop.should_stop(model, ctx, log.steps)
                set_train_mode(model, mode, keep)
                if stop:
                    log.stopped_at = log.steps
                    break
        biggest = max((p.detach().norm().item() for p in params), default=0.0)
        if not math.isfinite(biggest) or biggest > cfg.max_param_norm:
            raise DivergenceError(f"parameter norm {biggest:.3g} exceeds {cfg.max_param_norm:g}", log.steps)
        mean_loss = loss_sum.item() / max(1, n_steps)
        log.epochs.append({"epoch": epoch, "loss": mean_loss, **parts.weighting.end_epoch(epoch)})
        epoch_end = getattr(progress, "epoch_end", None)
        if epoch_end is not None:  # live feedback (progress="metrics"): the callback restores the mode
            epoch_end(model, ctx, epoch, log.epochs[-1])
        if log.stopped_at is not None:
            break
        if sched is not None and cfg.schedule_per == "epoch":
            if isinstance(sched, torch.optim.lr_scheduler.ReduceLROnPlateau):
                sched.step(mean_loss)
            else:
                sched.step()
    model.eval()
    return log


def _batch_loss(cfg, parts: Parts, ctx, logits, x, nf, forget, retain, f_pos, r_pos,
                forget_weight: float) -> torch.Tensor:
    """α·Σw·ℓ_f + β·Σℓ_r, normalised over the merged batch (mixed) or per term (other mixings)."""
    terms_f = terms_r = None
    if nf:
        fb = Batch(x[:nf], forget.y[f_pos], f_pos)
        lf = parts.forget(logits[:nf], fb, ctx)
        w = parts.weighting(logits[:nf].detach(), fb, ctx).detach()
        terms_f = forget_weight * w * lf
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
