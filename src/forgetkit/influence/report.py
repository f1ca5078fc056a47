"""Markdown tables and the task-vs-utility scatter ("free lunch" shaded) of a soft-weighting run."""
from __future__ import annotations

import pathlib
from collections import defaultdict

import numpy as np

from ..bench.intervals import PLUS_MINUS, fmt_ci

TASK_METRIC = {"forgetkit": {"dp": "dp", "eop": "eop", "robustness": "robust_accuracy"},
               "reference": {"dp": "dp_surrogate", "eop": "eop_surrogate",
                             "robustness": "robust_accuracy"}}
"""The reported task metric per protocol and task (keys of :func:`.metrics.evaluate`)."""
REPORT_SPLIT = {"forgetkit": "test half", "reference": "validation"}
"""The split every reported number is measured on, per protocol."""
TASK_LABEL = {"dp": "|DP| (hard preds)", "eop": "|EOP| (hard preds)",
              "dp_surrogate": "DP surrogate (signed, probabilities)",
              "eop_surrogate": "EOP surrogate (signed, FERM log-loss)",
              "robust_accuracy": "robust accuracy %"}


def improvement(metric: str, before: float, after: float) -> float:
    """Task improvement (positive = better): fewer |gap| points (×100), or more robust-accuracy
    points. A signed gap counts by its size: −0.1 → 0.05 is an improvement of 5 points."""
    if metric == "robust_accuracy":
        return after - before
    return 100.0 * (abs(before) - abs(after))


def group(rows):
    out = defaultdict(list)
    for r in rows:
        dataset, model, _ = r["request"].split("/")
        out[(dataset, model, r["method"], r["weighting"])].append(r)
    return out


def table(ok_rows, metric: str) -> list[str]:
    lines = ["| dataset | model | unlearner | weighting | seeds | accuracy % before → after | "
             f"loss before → after | {TASK_LABEL[metric]} before → after | "
             "val task Δ predicted / actual |",
             "|---|---|---|---|---|---|---|---|---|"]
    for (d, m, u, w), rs in sorted(group(ok_rows).items()):
        get = lambda k: [r["metrics"][k] for r in rs]  # noqa: E731
        digits = 2 if metric == "robust_accuracy" else 3
        lines.append(
            f"| {d} | {m} | {u} | {w} | {len(rs)} | {fmt_ci(get('before_accuracy'))} → "
            f"{fmt_ci(get('after_accuracy'))} | {fmt_ci(get('before_loss'), 3)} → {fmt_ci(get('after_loss'), 3)} | "
            f"{fmt_ci(get('before_' + metric), digits)} → {fmt_ci(get('after_' + metric), digits)} | "
            f"{fmt_ci(get('predicted_delta_task'), 3)} / {fmt_ci(get('actual_delta_task'), 3)} |")
    return lines


def scatter(ok_rows, metric: str, path: pathlib.Path) -> None:
    """One panel per (dataset, model): Δ accuracy vs task improvement; green = free lunch."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = group(ok_rows)
    panels = sorted({(d, m) for d, m, _, _ in groups})
    cols = min(len(panels), 2)
    rows_n = int(np.ceil(len(panels) / cols))
    fig, axes = plt.subplots(rows_n, cols, figsize=(5.5 * cols, 4.2 * rows_n), squeeze=False)
    colors = {"influence": "C0", "retrain": "C1", "finetune": "C2", "ga": "C3"}
    for ax, (d, m) in zip(axes.flat, panels):
        pts = []
        for (d2, m2, u, w), rs in groups.items():
            if (d2, m2) != (d, m):
                continue
            dx = np.mean([r["metrics"]["after_accuracy"] - r["metrics"]["before_accuracy"] for r in rs])
            dy = np.mean([improvement(metric, r["metrics"]["before_" + metric],
                                      r["metrics"]["after_" + metric]) for r in rs])
            pts.append((dx, dy))
            ax.scatter(dx, dy, marker="o" if w == "hard" else "x", s=60, color=colors.get(u, "k"),
                       label=f"{u} ({w})")
        xs, ys = zip(*pts)
        span_x = max(1e-3, *np.abs(xs)) * 1.3
        span_y = max(1e-3, *np.abs(ys)) * 1.3
        ax.set_xlim(-span_x, span_x)
        ax.set_ylim(-span_y, span_y)
        ax.fill_between([0, span_x], 0, span_y, color="green", alpha=0.12, label="free lunch")
        ax.axhline(0, color="grey", lw=0.6)
        ax.axvline(0, color="grey", lw=0.6)
        ax.set_title(f"{d} / {m}")
        ax.set_xlabel("Δ accuracy (points)")
        ax.set_ylabel(("Δ robust accuracy" if metric == "robust_accuracy" else f"{metric.split('_')[0].upper()} gap reduction")
                      + " (points)")
        ax.legend(fontsize=6, loc="lower left")
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_report(cfg, rows, out_dir: pathlib.Path, smoke: bool, commits: list[str]) -> pathlib.Path:
    """``report.md`` (+ ``scatter.png``); ``commits`` are the ones the rows were computed at."""
    metric = TASK_METRIC[cfg.protocol][cfg.task]
    split = REPORT_SPLIT[cfg.protocol]
    ok = [r for r in rows if r["status"] == "ok"]
    failed = [r for r in rows if r["status"] == "failed"]
    lines = [f"# Soft-weighted unlearning: {cfg.name}", "",
             f"task `{cfg.task}`, protocol `{cfg.protocol}`, soft scheme `{cfg.soft_scheme}`, hard "
             f"fraction {cfg.hard_fraction}, seeds {cfg.seeds}, smoke={smoke}, "
             f"commit{'s' * (len(commits) > 1)} {', '.join(f'`{c}`' for c in commits)}, "
             f"{len(ok)} ok / {len(failed)} failed rows.",
             "", f"Each cell: {PLUS_MINUS}. Accuracy, loss and task metric on the **{split}** split; "
             "'val task Δ' is the validation surrogate F (predicted −εᵀI_F vs actual).", ""]
    lines += table(ok, metric) if ok else ["(no finished rows)"]
    if ok:
        scatter(ok, metric, out_dir / "scatter.png")
        lines += ["", "![task vs utility](scatter.png)"]
    if failed:
        lines += ["", "## Failed cells", "", "| request | unlearner | weighting | seed | error |",
                  "|---|---|---|---|---|"]
        lines += [f"| {r['request']} | {r['method']} | {r['weighting']} | {r['seed']} | "
                  f"{(r['error'] or '').replace('|', '/')} |" for r in failed]
    path = out_dir / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path
