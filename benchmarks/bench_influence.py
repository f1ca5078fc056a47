"""Predicted influence vs exact leave-one-out refits on Adult (the paper's Figure 3 shape).

Rows: logistic regression, NN last layer; columns: utility (test loss), fairness (DP surrogate),
robustness (adversarial loss). ``python benchmarks/bench_influence.py [--n-train 1000]
[--n-loo 200] [--out docs/img/influence_loo.png]`` prints the Pearson/Spearman correlations.
"""
from __future__ import annotations

import argparse
import time

import matplotlib
import numpy as np
from scipy.stats import pearsonr, spearmanr

from forgetkit.data import load_dataset
from forgetkit.influence import LinearInfluence, fit_logistic, make_task, utility_loss
from forgetkit.influence.core import as_tensor
from forgetkit.influence.features import embed, train_feature_extractor
from forgetkit.influence.targets import value_and_grad

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def loo_study(x, y, xv, yv, sv, l2, idx):
    """(name, predicted, actual) for utility, DP and robustness on the points ``idx``."""
    theta = fit_logistic(x, y, l2)
    infl = LinearInfluence(l2).fit(theta, x, y)
    refits = [fit_logistic(np.delete(x, j, 0), np.delete(y, j), l2, theta0=theta) for j in idx]
    tasks = {"utility (test loss)": lambda t: utility_loss(t, as_tensor(xv), as_tensor(yv)),
             "fairness (DP surrogate)": make_task("dp", theta, xv, yv, sv),
             "robustness (adv. loss)": make_task("robustness", theta, xv, yv, sv)}
    out = []
    for name, fn in tasks.items():
        f0, g = value_and_grad(fn, theta)
        out.append((name, infl.influence(g)[idx], np.array([float(fn(as_tensor(t))) - f0 for t in refits])))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n-train", type=int, default=1000)
    ap.add_argument("--n-loo", type=int, default=200)
    ap.add_argument("--n-test", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="docs/img/influence_loo.png")
    args = ap.parse_args()
    start = time.perf_counter()
    b = load_dataset("adult")
    rng = np.random.RandomState(args.seed)
    tr = rng.choice(len(b.train), args.n_train, replace=False)
    te = rng.choice(len(b.test), args.n_test, replace=False)
    x, y = b.train.x[tr].double().numpy(), b.train.y[tr].numpy()
    xv, yv, sv = b.test.x[te].double().numpy(), b.test.y[te].numpy(), b.test.sensitive[te].numpy()
    idx = np.sort(rng.choice(args.n_train, args.n_loo, replace=False))
    # NN last layer: extractor on a disjoint 1 % of train (as the reference), head on ``x``
    feat_idx = rng.choice(np.setdiff1d(np.arange(len(b.train)), tr), max(100, len(b.train) // 100),
                          replace=False)
    extractor = train_feature_extractor(b.train.x[feat_idx], b.train.y[feat_idx], args.seed)
    rows = {"LR (l2=1)": loo_study(x, y, xv, yv, sv, 1.0, idx),
            "NN last layer (l2=1e-4)": loo_study(embed(extractor, x), y, embed(extractor, xv), yv,
                                                 sv, 1e-4, idx)}
    fig, axes = plt.subplots(2, 3, figsize=(13, 8))
    for r, (model, studies) in enumerate(rows.items()):
        for c, (name, pred, act) in enumerate(studies):
            p, s = pearsonr(pred, act)[0], spearmanr(pred, act)[0]
            print(f"{model:24s} {name:26s} pearson {p:.4f} spearman {s:.4f}")
            ax = axes[r, c]
            ax.scatter(act, pred, s=8, alpha=0.6)
            lim = [min(act.min(), pred.min()), max(act.max(), pred.max())]
            ax.plot(lim, lim, "k--", lw=0.8)
            ax.set_title(f"{model}: {name}\nPearson {p:.3f}, Spearman {s:.3f}", fontsize=9)
            ax.set_xlabel("actual change (LOO refit)")
            ax.set_ylabel("predicted (influence)")
    fig.tight_layout()
    fig.savefig(args.out, dpi=110)
    print(f"saved {args.out}; n_train={args.n_train}, n_loo={args.n_loo}, n_test={args.n_test}, "
          f"seed={args.seed}, {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
