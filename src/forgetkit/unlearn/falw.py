"""FaLW: forgetting-aware loss reweighting for long-tailed forget sets.

Source: Yu et al., "FaLW: A Forgetting-aware Loss Reweighting for Long-tailed Unlearning", ICLR
(Eqs. 5–7 and Algorithm 1; the reference code is the paper's supplementary material, no public
repository). Each forget sample's loss is scaled by how its current true-class
probability compares with the current model's probabilities on *unseen* data of the same class:

    z_i = (p_i − μ_c) / max(σ_c, σ_min)          (μ_c, σ_c: held-out split, current model)
    B_c = (N_f / (C · N_f,c))^τ                   (balance factor, fixed per run)
    w_i = 1 + sign(z_i) · tanh(|z_i|)^(1 / (η·B_c))   ∈ [0, 2]

Over-forgotten samples (p far below unseen data) get w → 0, under-forgotten ones w → 2; tail
classes (B > 1) react to the same z more strongly. ``falw_beta`` fits a Beta distribution by
maximum likelihood instead and uses s = 2(F(p) − 0.5) in place of tanh(z) (the paper's Table 8).

How often μ_c, σ_c are re-estimated is the ``estimate`` option: ``every_step`` (Algorithm 1, the
reference), ``every_k`` (a full held-out pass every ``k`` steps) or ``running`` (each step refreshes
the probabilities of the next ``running_batch`` held-out samples, cycling through the split, and
refits from that buffer). Default ``every_k`` with k = 50: on Fashion-MNIST it cost 1.01× RL against
3.6× for ``every_step``, at an Avg. Gap within seed noise of it (``docs/results/falw.md``).
"""
from __future__ import annotations

import warnings

import torch
from scipy.special import betainc

from ..data.base import as_float
from ..data.requests import class_groups
from .context import UnlearnContext
from .weightings import WEIGHTINGS, Weighting

ESTIMATES = ("every_step", "every_k", "running")


def deviation_weight(score: torch.Tensor, balance: torch.Tensor | float, eta: float = 1.0) -> torch.Tensor:
    """w = 1 + sign(s)·|s|^(1/(η·B)) for a deviation score s ∈ [−1, 1]; maps s = −1, 0, 1 to 0, 1, 2."""
    return 1 + torch.sign(score) * score.abs() ** (1.0 / (eta * balance))


def falw_weight(z: torch.Tensor, balance: torch.Tensor | float, eta: float = 1.0) -> torch.Tensor:
    """FaLW Eq. 7 with η: 1 + sign(z)·tanh(|z|)^(1/(η·B)) (tanh keeps the score in (−1, 1))."""
    return deviation_weight(torch.tanh(z), balance, eta)


def balance_factor(counts: torch.Tensor, num_classes: int, tau: float) -> torch.Tensor:
    """B_k = (N_f / (C·N_f,k))^τ per class (Eq. 6); classes absent from the forget set get 1."""
    counts = counts.double()
    ratio = counts.sum() / (num_classes * counts.clamp(min=1))
    return torch.where(counts > 0, ratio ** tau, torch.ones_like(ratio)).float()


def zscores(p: torch.Tensor, mu: torch.Tensor, sigma: torch.Tensor, sigma_min: float = 1e-8) -> torch.Tensor:
    """(p − μ) / max(σ, σ_min): the clamp keeps a class whose unseen probabilities agree exactly finite."""
    return (p - mu) / sigma.clamp(min=sigma_min)


def class_moments(p: torch.Tensor, y: torch.Tensor, num_classes: int) -> tuple[torch.Tensor, ...]:
    """Per-class count, mean and population std of ``p`` (classes without samples: count 0)."""
    n = torch.zeros(num_classes, dtype=torch.float64, device=p.device).index_add_(0, y, torch.ones_like(p, dtype=torch.float64))
    s1 = torch.zeros_like(n).index_add_(0, y, p.double())
    s2 = torch.zeros_like(n).index_add_(0, y, p.double() ** 2)
    mu = s1 / n.clamp(min=1)
    var = (s2 / n.clamp(min=1) - mu ** 2).clamp(min=0)
    return n, mu.float(), var.sqrt().float()


def fit_beta(p: torch.Tensor, y: torch.Tensor, num_classes: int, eps: float = 1e-6,
             iters: int = 50) -> tuple[torch.Tensor, torch.Tensor]:
    """Maximum-likelihood Beta(a, b) per class by Newton's method on the digamma equations.

    The MLE solves ψ(a) − ψ(a+b) = mean log p and ψ(b) − ψ(a+b) = mean log(1−p); the method of
    moments starts it. p is clipped to [eps, 1−eps] because softmax probabilities reach 0 and 1.
    """
    p = p.double().clamp(eps, 1 - eps)
    n = torch.zeros(num_classes, dtype=torch.float64, device=p.device).index_add_(0, y, torch.ones_like(p))
    m = n.clamp(min=1)
    s1 = torch.zeros_like(n).index_add_(0, y, p.log()) / m
    s2 = torch.zeros_like(n).index_add_(0, y, (1 - p).log()) / m
    mean = (torch.zeros_like(n).index_add_(0, y, p) / m).clamp(eps, 1 - eps)
    var = (torch.zeros_like(n).index_add_(0, y, p ** 2) / m - mean ** 2).clamp(min=1e-12)
    common = (mean * (1 - mean) / var - 1).clamp(min=1e-3)
    a, b = (mean * common).clamp(1e-3, 1e6), ((1 - mean) * common).clamp(1e-3, 1e6)
    for _ in range(iters):
        dab = torch.digamma(a + b)
        g1, g2 = torch.digamma(a) - dab - s1, torch.digamma(b) - dab - s2
        tab = torch.polygamma(1, a + b)
        j11, j22 = torch.polygamma(1, a) - tab, torch.polygamma(1, b) - tab
        det = j11 * j22 - tab * tab
        da, db = (j22 * g1 + tab * g2) / det, (tab * g1 + j11 * g2) / det
        a, b = (a - da).clamp(a / 2, a * 2).clamp(1e-3, 1e6), (b - db).clamp(b / 2, b * 2).clamp(1e-3, 1e6)
    return a, b


def beta_deviation(p: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """s = 2(F(p) − 0.5) with F the Beta(a, b) CDF: −1 far below unseen data, +1 far above."""
    cdf = betainc(a.detach().cpu().double().numpy(), b.detach().cpu().double().numpy(),
                  p.detach().cpu().double().clamp(0, 1).numpy())
    return torch.as_tensor(2 * (cdf - 0.5), dtype=torch.float32, device=p.device)


def rank_deviation(p: torch.Tensor, y: torch.Tensor, sorted_keys: torch.Tensor, starts: torch.Tensor,
                   counts: torch.Tensor) -> torch.Tensor:
    """s = 2(F̂(p) − 0.5) with F̂ the empirical CDF (mid-rank for ties) of the class's held-out p.

    ``sorted_keys`` holds the held-out values as ``2·class + p``, sorted, so one ``searchsorted``
    serves every class; ``starts``/``counts`` locate each class's block (see :func:`class_sorted_keys`).
    """
    key = 2 * y.double() + p.double()
    below = torch.searchsorted(sorted_keys, key, right=False) - starts[y]
    not_above = torch.searchsorted(sorted_keys, key, right=True) - starts[y]
    cdf = (below + not_above).double() / (2 * counts[y].clamp(min=1))
    return (2 * cdf - 1).float()


def class_sorted_keys(p: torch.Tensor, y: torch.Tensor, num_classes: int) -> tuple[torch.Tensor, ...]:
    """(sorted 2·class + p, start index and count of each class's block) for :func:`rank_deviation`."""
    counts = torch.bincount(y, minlength=num_classes)
    starts = torch.cumsum(counts, 0) - counts
    return torch.sort(2 * y.double() + p.double().clamp(0, 1)).values, starts, counts


def true_class_probs(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """p_θ(y_i | x_i) from logits."""
    return torch.softmax(logits.float(), 1).gather(1, y.view(-1, 1)).squeeze(1)


@torch.no_grad()
def heldout_probs(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
    """True-class probabilities of the current model in eval mode (its train/eval mode is restored).

    Always fp32: autocast is switched off even inside a caller's autocast region, because the
    per-class σ of these probabilities moves by up to 6 % in bf16 (the reference computes in fp32).
    """
    was_training = model.training
    model.eval()
    out = []
    for xb, yb in zip(x.split(batch_size), y.split(batch_size)):
        with torch.autocast(x.device.type, enabled=False):
            out.append(true_class_probs(model(as_float(xb)), yb))
    model.train(was_training)
    return torch.cat(out)


class _FaLWBase(Weighting):
    """Held-out statistics on a schedule, balance factor, weight statistics per epoch."""

    needs = frozenset({"heldout"})

    def __init__(self, eta: float = 1.0, tau: float = 0.15, estimate: str = "every_k", k: int = 50,
                 running_batch: int = 128):
        if eta <= 0:
            raise ValueError(f"eta must be > 0, got {eta}")
        if tau < 0:
            raise ValueError(f"tau must be >= 0, got {tau}")
        if estimate not in ESTIMATES:
            raise ValueError(f"estimate must be one of {ESTIMATES}, got {estimate!r}")
        if k < 1 or running_batch < 1:
            raise ValueError("k and running_batch must be >= 1")
        self.eta, self.tau, self.estimate, self.k, self.running_batch = eta, tau, estimate, k, running_batch

    # -- statistics of unseen data -----------------------------------------------------------
    def _fit(self, p: torch.Tensor, y: torch.Tensor) -> None:
        """Fit the per-class distribution of held-out probabilities ``p``."""
        raise NotImplementedError

    def _score(self, p: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Deviation score in [−1, 1] of forget probabilities ``p`` with true labels ``y``."""
        raise NotImplementedError

    def setup(self, ctx: UnlearnContext, model: torch.nn.Module) -> None:
        c = ctx.num_classes
        held = ctx.heldout.to(ctx.device)
        self._hx, self._hy = held.x, held.y
        f_y = ctx.forget.y.cpu()
        counts = torch.bincount(f_y, minlength=c)
        self._balance = balance_factor(counts, c, self.tau).to(ctx.device)
        self._present = (torch.bincount(held.y.cpu(), minlength=c) > 0).to(ctx.device)
        missing = sorted(set(torch.nonzero(counts > 0).flatten().tolist())
                         - set(torch.nonzero(self._present.cpu()).flatten().tolist()))
        if missing:
            warnings.warn(f"FaLW: forget classes {missing} have no held-out samples; their weight is 1",
                          stacklevel=2)
        groups = class_groups(f_y.numpy(), c)
        self._group_of = {g: torch.tensor(cl, dtype=torch.long, device=ctx.device) for g, cl in groups.items() if cl}
        self._probs: torch.Tensor | None = None
        self._cursor, self._refreshed = 0, 0
        self._order = torch.randperm(len(held), generator=ctx.generator(31)).to(ctx.device)
        self._reset_epoch(c, ctx.device)

    def before_step(self, model, ctx, step):
        due = self.estimate == "every_k" and step - self._refreshed >= self.k  # robust to skipped step ids
        if self._probs is None or self.estimate == "every_step" or due:
            self._probs = heldout_probs(model, self._hx, self._hy)
            self._refreshed = step
        elif self.estimate == "running":
            n = len(self._order)
            idx = self._order[(self._cursor + torch.arange(min(self.running_batch, n), device=self._order.device)) % n]
            self._cursor = (self._cursor + len(idx)) % n
            self._probs[idx] = heldout_probs(model, self._hx[idx], self._hy[idx])
        else:
            return
        self._fit(self._probs, self._hy)

    # -- weights ---------------------------------------------------------------------------
    def __call__(self, logits, batch, ctx):
        if self._probs is None:
            raise RuntimeError("FaLW weights asked for before before_step estimated the held-out statistics")
        y = batch.y
        p = true_class_probs(logits.detach(), y)
        w = deviation_weight(self._score(p, y), self._balance[y], self.eta)
        w = torch.where(self._present[y], w, torch.ones_like(w)).detach()
        self._w_sum.index_add_(0, y, w.double())
        self._w_n.index_add_(0, y, torch.ones_like(w, dtype=torch.float64))
        self._low += (w < 0.1).sum()
        self._high += (w > 1.9).sum()
        return w

    def _reset_epoch(self, num_classes: int, device) -> None:
        self._w_sum = torch.zeros(num_classes, dtype=torch.float64, device=device)
        self._w_n = torch.zeros_like(self._w_sum)
        self._low = torch.zeros((), dtype=torch.long, device=device)
        self._high = torch.zeros_like(self._low)

    def end_epoch(self, epoch):
        """Mean weight overall and per head/mid/tail group; shares of weights < 0.1 and > 1.9."""
        n = self._w_n.sum().item()
        out = {}
        if n:
            out["w_mean"] = self._w_sum.sum().item() / n
            for g, cl in self._group_of.items():
                gn = self._w_n[cl].sum().item()
                if gn:
                    out[f"w_{g}"] = self._w_sum[cl].sum().item() / gn
            out["w_frac_low"] = self._low.item() / n
            out["w_frac_high"] = self._high.item() / n
        self._reset_epoch(len(self._w_sum), self._w_sum.device)
        return out


@WEIGHTINGS.register("falw")
class FaLW(_FaLWBase):
    """FaLW with a Gaussian per class on held-out true-class probabilities (Eq. 7)."""

    description = "FaLW: per-sample weight in [0, 2] from the z-score against unseen data (Gaussian), balance factor τ"
    paper_name = "FaLW"

    def __init__(self, eta: float = 1.0, tau: float = 0.15, sigma_min: float = 1e-8, estimate: str = "every_k",
                 k: int = 50, running_batch: int = 128):
        super().__init__(eta=eta, tau=tau, estimate=estimate, k=k, running_batch=running_batch)
        self.sigma_min = sigma_min

    def _fit(self, p, y):
        _, self._mu, self._sigma = class_moments(p, y, len(self._balance))

    def _score(self, p, y):
        return torch.tanh(zscores(p, self._mu[y], self._sigma[y], self.sigma_min))


@WEIGHTINGS.register("falw_beta")
class FaLWBeta(_FaLWBase):
    """FaLW-beta: Beta(a, b) per class fitted by maximum likelihood; score 2(F(p) − 0.5) (Table 8)."""

    description = "FaLW-beta: like falw, with a Beta distribution (MLE) and a CDF-based deviation score"
    paper_name = "FaLW-Beta"

    def __init__(self, eta: float = 1.0, tau: float = 0.15, eps: float = 1e-6, estimate: str = "every_k",
                 k: int = 50, running_batch: int = 128):
        super().__init__(eta=eta, tau=tau, estimate=estimate, k=k, running_batch=running_batch)
        self.eps = eps

    def _fit(self, p, y):
        self._a, self._b = fit_beta(p, y, len(self._balance), self.eps)

    def _score(self, p, y):
        return beta_deviation(p.clamp(self.eps, 1 - self.eps), self._a[y], self._b[y])


@WEIGHTINGS.register("falw_rank")
class FaLWRank(_FaLWBase):
    """FaLW with the empirical CDF of the held-out probabilities: no distributional assumption.

    Our variant, not the paper's. Held-out true-class probabilities of a trained classifier are
    strongly left-skewed (most near 1, a tail towards 0): the Gaussian z-score then rates the typical
    unseen-like sample as *above* the mean (z > 0, w > 1) and a minority near 0. A forget set that
    already looks exactly like unseen data gets a mean weight of ≈ 1.09 from ``falw`` (Beta(8, 1)
    data), i.e. a steady push to forget more. With the empirical CDF the score of such a set is
    uniform on [−1, 1] and its mean weight is 1, so only real departures from unseen data move it.
    """

    description = "FaLW-rank (ours): like falw, with the held-out empirical CDF (mid-rank) as the deviation score"
    paper_name = "FaLW-rank"

    def _fit(self, p, y):
        self._keys, self._starts, self._counts = class_sorted_keys(p, y, len(self._balance))

    def _score(self, p, y):
        return rank_deviation(p, y, self._keys, self._starts, self._counts)
