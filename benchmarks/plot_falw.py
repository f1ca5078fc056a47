"""Plots of FaLW experiments, rebuilt from a run directory's result store.

``python benchmarks/plot_falw.py gamma RUN_DIR OUT.png``   FA gap and Avg. Gap to Retrain vs γ per method
``python benchmarks/plot_falw.py tau RUN_DIR OUT.png``     Avg. Gap and ΔFA per group vs τ (labels "… τ=x")
``python benchmarks/plot_falw.py weights RUN_DIR OUT.png`` per-epoch mean FaLW weight per head/mid/tail
group and the shares of weights < 0.1 and > 1.9, from the history artifact of every FaLW row
"""
from __future__ import annotations

import re
import sys
from collections import defaultdict
from pathlib import Path

import matplotlib
import numpy as np

from forgetkit.bench.intervals import t_interval
from forgetkit.bench.report import _label
from forgetkit.bench.store import ResultStore

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402




def _gamma(request: str) -> float:
    return float(re.search(r"-g([0-9.]+)$", request).group(1))


def plot_gamma(rows, out: Path) -> None:
    """FA gap and Avg. Gap (mean ± 95 % Student-t half-width over seeds) against γ, one line per method."""
    data = defaultdict(lambda: defaultdict(list))
    for r in rows:
        if r["method"] not in ("retrain", "original"):
            data[_label(r)][_gamma(r["request"])].append((r["metrics"]["gap_FA"], r["metrics"]["AvgGap"]))
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
    for label, by_g in sorted(data.items()):
        gs = sorted(by_g)
        for ax, i in zip(axes, (0, 1)):
            vals = [np.array([v[i] for v in by_g[g]]) for g in gs]
            ax.errorbar(gs, [v.mean() for v in vals], [t_interval(v)[1] or 0.0 for v in vals], marker="o", capsize=3,
                        label=label)
    for ax, name in zip(axes, ("|FA − FA_Retrain|", "Avg. Gap")):
        ax.set_xlabel("γ (long-tail exponent)")
        ax.set_ylabel(name)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=100)


def plot_tau(rows, out: Path) -> None:
    """Avg. Gap and ΔFA per group against τ, one line per request."""
    data = defaultdict(lambda: defaultdict(list))
    for r in rows:
        m = re.search(r"τ=([0-9.]+)", r["method"])
        if m:
            data[r["request"]][float(m.group(1))].append(r["metrics"])
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
    for request, by_t in sorted(data.items()):
        ts = sorted(by_t)
        axes[0].plot(ts, [np.mean([x["AvgGap"] for x in by_t[t]]) for t in ts], marker="o", label=request)
        for g, style in (("head", "-"), ("tail", "--")):
            axes[1].plot(ts, [np.nanmean([x.get(f"dFA_{g}", np.nan) for x in by_t[t]]) for t in ts], style,
                         marker="o", label=f"{request} {g}")
    axes[0].set_ylabel("Avg. Gap")
    axes[1].set_ylabel("ΔFA (FaLW − Retrain)")
    axes[1].axhline(0, color="black", lw=0.8)
    for ax in axes:
        ax.set_xlabel("τ")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out, dpi=100)


def plot_weights(store: ResultStore, rows, out: Path) -> None:
    """Per-epoch weight statistics of every FaLW row (one panel per request, first seed)."""
    falw = [r for r in rows if r["weighting"].startswith("falw") and r["seed"] == min(x["seed"] for x in rows)]
    requests = sorted({r["request"] for r in falw})
    fig, axes = plt.subplots(2, len(requests), figsize=(3.6 * len(requests), 5), squeeze=False)
    for j, request in enumerate(requests):
        for i, r in enumerate(sorted((r for r in falw if r["request"] == request), key=_label)):
            hist = store.artifacts(r["key"]).get("history", [])
            ep, color = [h["epoch"] for h in hist], f"C{i}"
            for g, style in (("head", "-"), ("mid", ":"), ("tail", "--")):
                axes[0, j].plot(ep, [h.get(f"w_{g}", np.nan) for h in hist], style, color=color, label=f"{_label(r)} {g}")
            axes[1, j].plot(ep, [h.get("w_frac_low", np.nan) for h in hist], "-", color=color, label=f"{_label(r)} w<0.1")
            axes[1, j].plot(ep, [h.get("w_frac_high", np.nan) for h in hist], "--", color=color, label=f"{_label(r)} w>1.9")
        axes[0, j].set_title(request, fontsize=9)
        axes[0, j].set_ylabel("mean weight")
        axes[1, j].set_ylabel("share of samples")
        axes[1, j].set_xlabel("epoch")
    axes[0, 0].legend(fontsize=6)
    axes[1, 0].legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(out, dpi=100)


def main() -> None:
    if len(sys.argv) != 4 or sys.argv[1] not in ("gamma", "tau", "weights"):
        sys.exit(__doc__)
    kind, run_dir, out = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
    with ResultStore(run_dir / "results.sqlite") as store:
        rows = store.rows(status="ok")
        if kind == "gamma":
            plot_gamma(rows, out)
        elif kind == "tau":
            plot_tau(rows, out)
        else:
            plot_weights(store, rows, out)
    print(out)


if __name__ == "__main__":
    main()
