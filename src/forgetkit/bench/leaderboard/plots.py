"""The leaderboard's gap-vs-time plot: per setting, each row's mean Avg. Gap against its mean
unlearning time, Pareto-optimal rows in red."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from ..grid import ORIGINAL
from .loading import Entry, Setting
from .statistics import pareto_front

LABELLED = 12
"""a crowded Pareto panel names only its Pareto-optimal rows and this many closest to Retrain"""

@dataclass
class Panel:
    """Methods compared over the same shapes of one setting: mean time and mean Avg. Gap over them."""

    setting: str
    shapes: list[str]
    points: dict[str, tuple[float, float]]
    """shown name → (mean time s, mean Avg. Gap)"""
    front: set[str]
    left_out: list[str]
    """rows that apply to these shapes but have no gap on one of them (failed)"""
    tuned: dict[str, bool]


def pareto_panels(setting: Setting) -> list[Panel]:
    """One panel per set of shapes that rows apply to (all shapes; class shapes for class-only
    methods): a method is plotted where it has a row on every shape of the panel."""
    cover: dict[str, tuple[str, ...]] = {}
    entries: dict[str, dict[str, Entry]] = {}
    for s in setting.shapes.values():
        for e in s.entries.values():
            if e.label == ORIGINAL or (e.dirty and not e.is_reference):
                continue
            cover[e.label] = cover.get(e.label, ()) + (s.name,)
            entries.setdefault(e.label, {})[s.name] = e
    panels = []
    for shapes in sorted(set(cover.values()), key=lambda c: (-len(c), c)):
        points, left, tuned = {}, [], {}
        for label, cov in cover.items():
            if not set(shapes) <= set(cov):
                continue
            es = [entries[label][n] for n in shapes]
            gaps = [np.mean(list(e.gaps().values())) if e.gaps() else None for e in es]
            times = [e.timing()[0] for e in es]
            name = es[0].name
            if any(g is None for g in gaps) or any(t is None for t in times):
                left.append(name)
                continue
            points[name] = (float(np.mean(times)), float(np.mean(gaps)))
            tuned[name] = es[0].tuned
        if points:
            panels.append(Panel(setting.name, list(shapes), points, pareto_front(points), sorted(left), tuned))
    return panels


def plot_panels(panels: list[Panel], path: Path | BinaryIO) -> None:
    """Gap vs time, one panel per (setting, shape set); Pareto-optimal rows in red and named."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = min(3, len(panels))
    nrows = -(-len(panels) // cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(5.2 * cols, 4.4 * nrows), squeeze=False)
    for ax, p in zip(axes.flat, panels):
        closest = set(sorted(p.points, key=lambda k: p.points[k][1])[:LABELLED])
        for name, (t, g) in p.points.items():
            on = name in p.front
            ax.scatter(t, g, s=60 if on else 35, marker="o" if p.tuned.get(name) else "s",
                       facecolors=("tab:red" if on else "tab:blue") if p.tuned.get(name) else "none",
                       edgecolors="tab:red" if on else "tab:blue", zorder=3)
            if on or name in closest or len(p.points) <= LABELLED:
                ax.annotate(name, (t, g), fontsize=8, xytext=(4, 3), textcoords="offset points",
                            fontweight="bold" if on else "normal")
        front = sorted((p.points[n] for n in p.front))
        ax.step([x for x, _ in front], [y for _, y in front], where="post", color="tab:red", lw=1, alpha=0.6)
        ax.set_xscale("log")
        ax.set_xlabel("mean unlearning time (s, log scale)", fontsize=10)
        ax.set_ylabel("mean Avg. Gap to Retrain ↓", fontsize=10)
        ax.set_title(f"{p.setting}: " + (", ".join(p.shapes) if len(p.shapes) <= 3 else f"{len(p.shapes)} shapes"),
                     fontsize=11)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], marker="o", ls="", color="tab:blue", label="tuned"),
               Line2D([], [], marker="s", ls="", mfc="none", color="tab:blue", label="reference defaults"),
               Line2D([], [], marker="o", ls="-", color="tab:red", label="Pareto-optimal")]
    axes.flat[0].legend(handles=handles, fontsize=8, loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def pareto_lines(panels: list[Panel]) -> list[str]:
    out = []
    for p in panels:
        order = sorted(p.front, key=lambda n: p.points[n][0])
        line = (f"- **{p.setting}**, shapes {', '.join(f'`{s}`' for s in p.shapes)}: Pareto-optimal (fastest first): "
                + ", ".join(f"{n} ({p.points[n][0]:.2g} s, gap {p.points[n][1]:.2f})" for n in order))
        if p.left_out:
            line += f"; not plotted (no gap on some shape of the panel): {', '.join(p.left_out)}"
        out.append(line + ".")
    return out + [""]
