"""The leaderboard (``forgetkit report --leaderboard``): every method, at its reference defaults and
tuned, ranked per request shape and data/model setting by Avg. Gap to Retrain.

Per shape: Avg. Gap with a 95 % Student-t interval over seeds, each row's rank, a paired t-test
against the best row on the seeds both share, FA/RA/TA/MIA, the class-request attacks (MIA-NN gap,
U-LiRA) where they were measured, run time and speed-up over Retrain, the recipe and commit of each
row. Across shapes: mean ranks at reference defaults and under equal tuning, and a gap-vs-time
Pareto plot. The closing section is the reading given with ``--reading``, included verbatim (so
regenerating never erases it), or else a factual summary computed from the numbers.

The statistics are small pure functions (tested against slow references in
``tests/bench/test_leaderboard.py``); the rest gathers rows with :func:`forgetkit.bench.report.load_run`
and renders Markdown.
"""
from __future__ import annotations

import json
import math
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy import stats

from ..methods import METHODS
from ..unlearn.weightings import WEIGHTINGS
from .grid import ORIGINAL, RETRAIN, paper_name, weighting_name
from .report import load_run
from .tune import TUNED_SUFFIX

LEVEL = 0.95
"""coverage of the intervals over seeds"""
ALPHA = 0.05
"""significance level the summary counts paired tests at"""
KINDS = ("random", "class", "longtail", "mixed")
"""request kinds; an unnamed request's own name starts with its kind (``class3``, ``longtail-r0.3-g1``)"""
CLAIMS = (("FaLW", "RL", ("longtail",), "long-tailed"),
          ("FaLW", "RL", ("mixed",), "mixed"),
          ("TRW", "RL", ("class",), "class"),
          ("RA-Targets (ours)", "RL", ("random", "longtail", "mixed", "class"), "all"),
          ("RA-Targets (ours)", "SalUn", ("random", "longtail", "mixed", "class"), "all"))
"""(method, baseline, request kinds, shape word): paper claims the automatic summary checks"""
OURS_AGAINST = ("RA-Targets (ours)", ("RL", "SalUn"))
"""our method and the baselines it must beat together, (shape, seed) by (shape, seed), under equal tuning"""
READING_TITLE = "What holds under equal tuning"
LABELLED = 12
"""a crowded Pareto panel names only its Pareto-optimal rows and this many closest to Retrain"""


# ---------------------------------------------------------------------------------------------
# statistics: small pure functions


def t_interval(values, level: float = LEVEL) -> tuple[float, float | None]:
    """(mean, half-width of the two-sided Student-t interval of the mean); no half-width (None)
    below two values, where the spread over seeds is unknown."""
    v = np.asarray(values, dtype=float)
    if v.ndim != 1 or v.size == 0 or not np.isfinite(v).all():
        raise ValueError(f"t_interval needs a non-empty 1-D list of finite numbers, got {values!r}")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
    if v.size < 2:
        return float(v[0]), None
    return float(v.mean()), float(stats.t.ppf(0.5 + level / 2, v.size - 1) * v.std(ddof=1) / math.sqrt(v.size))


def average_ranks(scores: dict[str, float]) -> dict[str, float]:
    """Rank 1 = lowest score; tied scores share the mean of the ranks they span."""
    if any(not math.isfinite(s) for s in scores.values()):
        raise ValueError(f"average_ranks needs finite scores, got {scores!r}")
    labels = list(scores)
    ranks = stats.rankdata([scores[k] for k in labels], method="average") if labels else []
    return {k: float(r) for k, r in zip(labels, ranks)}


def paired_p(a, b) -> float | None:
    """Two-sided paired t-test p of ``a`` against ``b`` (same seeds, same order); None below two
    pairs (no spread to test against); 1.0 when every pair is equal (the same numbers)."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"paired_p needs two 1-D samples of one length, got shapes {a.shape} and {b.shape}")
    if a.size < 2:
        return None
    if np.array_equal(a, b):
        return 1.0
    with warnings.catch_warnings():  # nearly equal differences: scipy warns, the p is still its answer
        warnings.simplefilter("ignore", RuntimeWarning)
        return float(stats.ttest_rel(a, b).pvalue)


def pareto_front(points: dict[str, tuple[float, float]]) -> set[str]:
    """Labels whose (time, gap) no other point dominates (no worse in both, better in one).

    Sorted by time, a point is on the front when its gap is the lowest among points of its time and
    below every gap of a faster point."""
    front: set[str] = set()
    best = math.inf
    times = sorted({t for t, _ in points.values()})
    for t in times:
        group = {k: g for k, (tt, g) in points.items() if tt == t}
        low = min(group.values())
        if low < best:
            front |= {k for k, g in group.items() if g == low}
            best = low
    return front


def mean_ranks(per_shape: list[dict[str, float]]) -> dict[str, tuple[float, int]]:
    """label → (mean rank over the shapes it was ranked on, how many shapes)."""
    got: dict[str, list[float]] = {}
    for ranks in per_shape:
        for k, r in ranks.items():
            got.setdefault(k, []).append(r)
    return {k: (float(np.mean(v)), len(v)) for k, v in got.items()}


# ---------------------------------------------------------------------------------------------
# rows of the run directories


@dataclass
class Entry:
    """One method row of one shape: its stored rows by seed."""

    label: str
    """the stored row label"""
    name: str
    """shown name: the paper's spelling, ``-tuned`` for a tuned row"""
    base: str
    """shown name of the method without tuning (the pair an untuned and a tuned row share)"""
    tuned: bool
    ok: dict[int, dict] = field(default_factory=dict)
    failed: dict[int, dict] = field(default_factory=dict)

    @property
    def is_reference(self) -> bool:
        return self.label in (ORIGINAL, RETRAIN)

    def errors(self) -> dict[int, str]:
        """seed → first line of the failed row's error."""
        return {s: str(r["error"] or "no message").splitlines()[0] for s, r in sorted(self.failed.items())}

    def gaps(self) -> dict[int, float]:
        """seed → Avg. Gap, for the seeds whose Retrain reference was there to compare with."""
        return {s: r["metrics"]["AvgGap"] for s, r in sorted(self.ok.items()) if "AvgGap" in r["metrics"]}

    def values(self, key: str) -> list[float]:
        """The metric over the row's finished seeds (a seed without it is skipped)."""
        return [float(r["metrics"][key]) for _, r in sorted(self.ok.items())
                if isinstance(r["metrics"].get(key), (int, float)) and math.isfinite(r["metrics"][key])]

    def recipes(self) -> list[str]:
        return sorted({str(r["params"]["recipe"]) for r in [*self.ok.values(), *self.failed.values()]
                       if r["params"].get("recipe")})

    def commits(self) -> list[str]:
        return sorted({str(r["provenance"].get("commit", "unknown"))
                       for r in [*self.ok.values(), *self.failed.values()]})


@dataclass
class Shape:
    name: str
    kind: str | None
    """request kind (``class``, ``longtail`` …); None when it cannot be told"""
    entries: dict[str, Entry] = field(default_factory=dict)


@dataclass
class Setting:
    """One run directory: one data/model setting."""

    name: str
    run_dir: Path
    description: str
    smoke: bool
    shapes: dict[str, Shape] = field(default_factory=dict)

    @property
    def tuned(self) -> bool:
        """Whether any row ran a tuned recipe (a setting run at reference defaults only has none)."""
        return any(e.tuned for s in self.shapes.values() for e in s.entries.values())


def split_by_tuning(settings: list[Setting]) -> tuple[list[Setting], list[Setting]]:
    """(settings the summaries compare under equal tuning, settings run at reference defaults only).

    Once one setting has tuned rows, a setting without any stands apart: its equal-tuning league
    would be its defaults, and pooling it would count default rows as tuned ones."""
    tuned = [st for st in settings if st.tuned]
    return (tuned, [st for st in settings if not st.tuned]) if tuned else (settings, [])


def shown_name(label: str, has_recipe: bool) -> tuple[str, str, bool]:
    """(shown name, shown base name, tuned) of a row label: a registry key becomes its paper's
    name (``salun-tuned`` → ``SalUn-tuned``), a label the config chose stays as it is."""
    tuned = label.endswith(TUNED_SUFFIX) or has_recipe
    base = label[:-len(TUNED_SUFFIX)] if label.endswith(TUNED_SUFFIX) else label
    if base in METHODS:
        base = paper_name(base)
    elif base in WEIGHTINGS and base != "uniform":  # RL with FaLW's weights is what its paper calls FaLW
        base = weighting_name(base)
    return (base + TUNED_SUFFIX if tuned else base), base, tuned


def shape_kind(name: str, specs: list[dict]) -> str | None:
    """The kind of the request a row's ``request`` names: a named spec's kind, else the prefix of
    the request's own name."""
    for s in specs:
        if s.get("name") == name:
            return s.get("kind")
    return next((k for k in KINDS if name.startswith(k)), None)


def load_setting(run_dir: str | Path) -> Setting:
    """The rows of one run directory, grouped by shape and row label."""
    run_dir = Path(run_dir)
    marker = run_dir / "experiment.json"
    if not marker.exists():
        raise FileNotFoundError(f"{run_dir} holds no run (no experiment.json); give a directory made by "
                                "`forgetkit run --out DIR`")
    kind = json.loads(marker.read_text()).get("experiment_type") or "forget"
    if kind != "forget":
        raise ValueError(f"{run_dir} is a {kind!r} run; the leaderboard ranks forget runs (experiment_type forget)")
    meta, rows, failed, _ = load_run(run_dir)
    if not rows and not failed:
        raise ValueError(f"{run_dir} has no finished rows yet; run `forgetkit run` with --out {run_dir} first")
    cfg = meta.get("config", {})
    specs = [s for s in cfg.get("requests", []) if s.get("role", "report") == "report"]
    named = [s["name"] for s in specs if s.get("name")]
    seen: list[str] = []
    for r in [*rows, *failed]:
        if r["request"] not in seen:
            seen.append(r["request"])
    order = {n: i for i, n in enumerate(named + [n for n in seen if n not in named])}
    prov = (rows or failed)[0]["provenance"]
    seeds = sorted({r["seed"] for r in [*rows, *failed]})
    desc = (f"{prov.get('dataset', cfg.get('dataset'))}, training pool {prov.get('n_train_pool', '?')} samples, "
            f"model {prov.get('model', cfg.get('model', {}).get('name'))}, seeds {seeds}")
    planned, done = len(meta.get("planned_keys", [])), len(rows) + len(failed)
    if done < planned:
        desc += f"; ⚠ unfinished run: {done} of {planned} planned cells have a row (re-run it to complete)"
    setting = Setting(meta["name"], run_dir, desc, bool(cfg.get("smoke")))
    recipe = {r["method"]: bool(r["params"].get("recipe")) for r in [*rows, *failed]}
    names = {lbl: shown_name(lbl, rec) for lbl, rec in recipe.items()}
    shown = [n[0] for n in names.values()]
    for lbl, (name, base, tuned) in names.items():  # two labels one spelling apart ("rl", "RL"): keep both as stored
        if shown.count(name) > 1:
            names[lbl] = (lbl, lbl.removesuffix(TUNED_SUFFIX), tuned)
    for r in sorted([*rows, *failed], key=lambda r: (order[r["request"]], r["seed"])):
        shape = setting.shapes.setdefault(r["request"], Shape(r["request"], shape_kind(r["request"], specs)))
        e = shape.entries.setdefault(r["method"], Entry(r["method"], *names[r["method"]]))
        (e.ok if r["status"] == "ok" else e.failed)[r["seed"]] = r
    return setting


# ---------------------------------------------------------------------------------------------
# ranking one shape


@dataclass
class Ranked:
    """The ranking of one (setting, shape): ranks of method rows and each one's test against the best."""

    ranks: dict[str, float]
    best: str | None
    tests: dict[str, tuple[float, float | None, int]]
    """label → (mean paired difference row − best, p, seeds shared)"""


def rank_shape(entries: list[Entry]) -> Ranked:
    """Rank method rows (not Original or Retrain) by mean Avg. Gap; test each against the best."""
    scores = {e.label: float(np.mean(list(e.gaps().values()))) for e in entries
              if not e.is_reference and e.gaps()}
    ranks = average_ranks(scores)
    if not scores:
        return Ranked({}, None, {})
    best = min(scores, key=lambda k: (scores[k], k))
    by = {e.label: e.gaps() for e in entries}
    tests = {}
    for label in scores:
        if label == best:
            continue
        seeds = sorted(by[label].keys() & by[best].keys())
        a, b = [by[label][s] for s in seeds], [by[best][s] for s in seeds]
        tests[label] = (float(np.mean(np.subtract(a, b))) if seeds else math.nan, paired_p(a, b), len(seeds))
    return Ranked(ranks, best, tests)


def league(shape: Shape, tuned: bool) -> dict[str, Entry]:
    """base name → the row that represents the method: at reference defaults (untuned rows only),
    or under equal tuning (the tuned row where there is one, else the untuned row)."""
    out: dict[str, Entry] = {}
    for e in shape.entries.values():
        if e.is_reference or (e.tuned and not tuned):
            continue
        if e.base not in out or (tuned and e.tuned):
            out[e.base] = e
    return out


def league_ranks(shape: Shape, tuned: bool) -> dict[str, float]:
    """base name → rank within the league of this shape."""
    members = league(shape, tuned)
    ranks = rank_shape(list(members.values())).ranks
    return {base: ranks[e.label] for base, e in members.items() if e.label in ranks}


# ---------------------------------------------------------------------------------------------
# Markdown


def _num(x: float | None, digits: int = 2) -> str:
    return "–" if x is None or not math.isfinite(x) else f"{x:.{digits}f}"


def fmt_ci(values, digits: int = 2) -> str:
    """``mean ± half-width`` of the 95 % interval, ``mean (n<2)`` for one value, ``–`` for none."""
    if not len(values):
        return "–"
    mean, half = t_interval(values)
    return f"{mean:.{digits}f} (n<2)" if half is None else f"{mean:.{digits}f} ± {half:.{digits}f}"


def fmt_p(p: float | None) -> str:
    if p is None:
        return "n<2"
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def _time(e: Entry) -> tuple[float | None, float | None]:
    """(mean unlearning time, mean Retrain time / mean unlearning time) over the row's seeds."""
    t, ref = e.values("time_s"), e.values("retrain_time_s")
    if not t:
        return None, None
    mean_t = float(np.mean(t))
    return mean_t, (float(np.mean(ref)) / mean_t if ref and mean_t > 0 else None)


def _display_order(shape: Shape, ranked: Ranked) -> list[Entry]:
    """Retrain and Original first; then each method's untuned and tuned rows side by side, pairs
    ordered by their better rank; rows without a rank (failed) last."""
    refs = [shape.entries[k] for k in (RETRAIN, ORIGINAL) if k in shape.entries]
    pairs: dict[str, list[Entry]] = {}
    for e in shape.entries.values():
        if not e.is_reference:
            pairs.setdefault(e.base, []).append(e)

    def pair_key(base):
        got = [ranked.ranks[e.label] for e in pairs[base] if e.label in ranked.ranks]
        return (min(got) if got else math.inf, base)
    out = list(refs)
    for base in sorted(pairs, key=pair_key):
        out += sorted(pairs[base], key=lambda e: e.tuned)
    return out


def shape_table(shape: Shape, ranked: Ranked) -> list[str]:
    """One shape of one setting: every row with its rank, interval, test, metrics, time, recipe, commit."""
    rows = list(shape.entries.values())
    extra = [(k, title) for k, title in (("MIA_NN_gap", "MIA-NN gap ↓"), ("ULiRA_acc", "U-LiRA acc (50 = ideal)"))
             if any(e.values(k) for e in rows)]
    head = (["Rank", "Method", "Recipe", "Avg. Gap ↓", "Δ vs best (p, n)", "FA", "RA", "TA", "MIA"]
            + [t for _, t in extra] + ["Time (s)", "Speed-up", "Seeds", "Commit"])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    notes = []
    for e in _display_order(shape, ranked):
        gaps = list(e.gaps().values())
        if e.label == RETRAIN:
            rank, gap, test = "ref.", "0 (reference)", "–"
        elif e.label == ORIGINAL:
            rank, gap, test = "–", fmt_ci(gaps) + " (not unlearned)", "–"
        else:
            rank = _num(ranked.ranks.get(e.label), 1).removesuffix(".0") if e.label in ranked.ranks else "–"
            gap = fmt_ci(gaps) if gaps else ("**failed**" if e.failed else "– (no Retrain reference)")
            if e.label == ranked.best:
                test = "best"
            elif e.label in ranked.tests:
                d, p, n = ranked.tests[e.label]
                test = f"{d:+.2f} (p {fmt_p(p)}, n={n})" if n else "– (no shared seed)"
            else:
                test = "–"
        recipe = "–" if e.is_reference else (", ".join(f"`{x}`" for x in e.recipes()) or
                                              ("⚠ none recorded" if e.tuned else "defaults"))
        metrics = [_num(np.mean(e.values(k))) if e.values(k) else "–" for k in ("FA", "RA", "TA", "MIA")]
        metrics += [fmt_ci(e.values(k)) for k, _ in extra]
        t, speed = _time(e)
        timing = ["–" if t is None or e.label == ORIGINAL else f"{t:.3g}" if t < 100 else f"{t:.0f}",
                  "1.0×" if e.label == RETRAIN else "–" if e.label == ORIGINAL or speed is None else f"{speed:.1f}×"]
        n_all = len(e.ok) + len(e.failed)
        seeds = str(len(e.ok)) if not e.failed else f"{len(e.ok)} of {n_all} ({len(e.failed)} failed)"
        if e.label != RETRAIN and len(gaps) < len(e.ok):
            seeds += f"; gap on {len(gaps)} (no Retrain row for the others)"
        lines.append("| " + " | ".join([rank, e.name, recipe, gap, test, *metrics, *timing, seeds,
                                        ", ".join(f"`{c}`" for c in e.commits())]) + " |")
        notes += [f"- {e.name}, seed {s}: failed — {msg}" for s, msg in e.errors().items()]
    n_shared = sorted({n for _, _, n in ranked.tests.values() if n})
    lines += ["", f"Δ vs best: paired difference in Avg. Gap to the best row (rank 1), over the seeds both "
              f"share (n), and the two-sided paired t-test's p. With n = {', '.join(map(str, n_shared)) or '–'} "
              "seeds the test has little power: p ≥ 0.05 does not show the rows are equal."]
    if notes:
        lines += ["", "Failed rows (counted above, not dropped):", *notes]
    return lines + [""]


def _rank_cell(r: tuple[float, int] | None) -> str:
    return "–" if r is None else f"{r[0]:.2f}"


def mean_rank_table(shapes: list[Shape]) -> tuple[list[str], dict[str, tuple[float, int]], dict[str, tuple[float, int]]]:
    """Mean rank per method over shapes, at reference defaults and under equal tuning, and the change."""
    defaults = mean_ranks([league_ranks(s, tuned=False) for s in shapes])
    tuned = mean_ranks([league_ranks(s, tuned=True) for s in shapes])
    has_tuned = {e.base for s in shapes for e in s.entries.values() if e.tuned}
    failed = {}
    for s in shapes:
        for base, e in league(s, True).items():
            if not e.gaps():
                failed[base] = failed.get(base, 0) + 1
    bases = sorted(set(defaults) | set(tuned) | set(failed),
                   key=lambda b: (tuned.get(b, (math.inf, 0))[0], defaults.get(b, (math.inf, 0))[0], b))
    lines = ["| Method | Mean rank, equal tuning | Mean rank, reference defaults | Change | Shapes ranked | "
             "Shapes failed |", "|---|---|---|---|---|---|"]
    for b in bases:
        d, t = defaults.get(b), tuned.get(b)
        change = f"{t[0] - d[0]:+.2f}" if d and t and b in has_tuned else "–"
        name = b if b in has_tuned else f"{b} †"
        lines.append(f"| {name} | {_rank_cell(t)} | {_rank_cell(d)} | {change} | {t[1] if t else 0} | "
                     f"{failed.get(b, 0)} |")
    lines += ["", "Ranks are within each shape's league (rank 1 = lowest mean Avg. Gap; ties share the mean rank); "
              "the equal-tuning league takes each method's tuned row, † marks a method without one (its "
              "reference-default row stands in). Change = equal tuning − defaults (negative: tuning moved it up). "
              "A method ranked on fewer shapes (e.g. class requests only) is averaged over those shapes only.", ""]
    return lines, defaults, tuned


def rank_matrix(shapes: list[Shape]) -> list[str]:
    """Equal-tuning league rank of each method on each shape."""
    per = {s.name: league_ranks(s, tuned=True) for s in shapes}
    bases = sorted({b for r in per.values() for b in r}, key=lambda b: (np.mean([r[b] for r in per.values() if b in r]), b))
    lines = ["| Method | " + " | ".join(f"`{s.name}`" for s in shapes) + " |", "|---|" + "---|" * len(shapes)]
    for b in bases:
        lines.append(f"| {b} | " + " | ".join(_num(per[s.name].get(b), 1) for s in shapes) + " |")
    return lines + [""]


# ---------------------------------------------------------------------------------------------
# the Pareto plot


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
            if e.label == ORIGINAL:
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
            times = [_time(e)[0] for e in es]
            name = es[0].name
            if any(g is None for g in gaps) or any(t is None for t in times):
                left.append(name)
                continue
            points[name] = (float(np.mean(times)), float(np.mean(gaps)))
            tuned[name] = es[0].tuned
        if points:
            panels.append(Panel(setting.name, list(shapes), points, pareto_front(points), sorted(left), tuned))
    return panels


def plot_panels(panels: list[Panel], path: Path) -> None:
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


# ---------------------------------------------------------------------------------------------
# the automatic reading


def head_to_head(settings: list[Setting], a: str, b: str, kinds: tuple[str, ...] | None = None) -> dict | None:
    """Under equal tuning: ``a`` − ``b`` Avg. Gap per (setting, shape, seed) on shapes of ``kinds``
    (None: every shape), with the ratio of their mean times over those shapes; None when no shape
    has both."""
    diffs, shapes, sig_a, sig_b, times = [], 0, 0, 0, []
    for st in settings:
        for s in st.shapes.values():
            if kinds is not None and s.kind not in kinds:
                continue
            members = league(s, tuned=True)
            if a not in members or b not in members:
                continue
            ga, gb = members[a].gaps(), members[b].gaps()
            seeds = sorted(ga.keys() & gb.keys())
            if not seeds:
                continue
            shapes += 1
            times.append((_time(members[a])[0], _time(members[b])[0]))
            d = [ga[k] - gb[k] for k in seeds]
            diffs += d
            p = paired_p([ga[k] for k in seeds], [gb[k] for k in seeds])
            if p is not None and p < ALPHA:
                sig_a += np.mean(d) < 0
                sig_b += np.mean(d) > 0
    if not diffs:
        return None
    ta, tb = (float(np.mean([t[i] for t in times])) for i in (0, 1))
    return {"wins": int(sum(x < 0 for x in diffs)), "pairs": len(diffs), "mean": float(np.mean(diffs)),
            "shapes": shapes, "sig_a": int(sig_a), "sig_b": int(sig_b), "time_ratio": ta / tb if tb > 0 else math.nan}


def beats_all(setting: Setting, a: str, rivals: tuple[str, ...]) -> tuple[int, int]:
    """(pairs where ``a`` had a lower Avg. Gap than every one of ``rivals``, pairs where all had a
    gap) over the (shape, seed) pairs of one setting, under equal tuning."""
    wins = pairs = 0
    for s in setting.shapes.values():
        members = league(s, tuned=True)
        if a not in members or any(r not in members for r in rivals):
            continue
        gaps = [members[a].gaps()] + [members[r].gaps() for r in rivals]
        for seed in set.intersection(*(set(g) for g in gaps)):
            pairs += 1
            wins += all(gaps[0][seed] < g[seed] for g in gaps[1:])
    return wins, pairs


def ours_lines(settings: list[Setting]) -> list[str]:
    """Per setting: how often our method beat the named baselines together (:data:`OURS_AGAINST`)."""
    a, rivals = OURS_AGAINST
    compared, untuned = split_by_tuning(settings)
    counts = [c for st in compared if (c := (st.name, *beats_all(st, a, rivals)))[2]]
    apart = [c for st in untuned if (c := (st.name, *beats_all(st, a, rivals)))[2]]
    if not counts and not apart:
        return []
    both = " and ".join(rivals)
    lines = [f"## {a} against {both} together", "",
             f"(shape, seed) pairs under equal tuning in which {a} had a lower Avg. Gap than each of {both}:", ""]
    lines += [f"- {name}: {w} of {n} ({100 * w / n:.0f} %)" for name, w, n in counts]
    if len(counts) > 1:
        w, n = sum(c[1] for c in counts), sum(c[2] for c in counts)
        lines.append(f"- all settings: {w} of {n} ({100 * w / n:.0f} %)")
    lines += [f"- {name} (reference defaults only, not in the total): {w} of {n} ({100 * w / n:.0f} %)"
              for name, w, n in apart]
    return lines + [""]


def automatic_reading(settings: list[Setting]) -> list[str]:
    """Facts computed from the numbers (no judgement): best mean ranks, what tuning changed, the
    papers' head-to-head claims, and who is Pareto-optimal."""
    settings, untuned = split_by_tuning(settings)
    shapes = [s for st in settings for s in st.shapes.values()]
    _, defaults, tuned = mean_rank_table(shapes)
    n = len(shapes)
    full = {b: r for b, r in tuned.items() if r[1] == max((x[1] for x in tuned.values()), default=0)}
    out = ["*No reading was given (`--reading FILE`); these lines are computed from the tables above. Under "
           "equal tuning a method's name stands for its tuned row where it has one.*", ""]
    if full:
        best = min(full, key=lambda b: (full[b][0], b))
        out.append(f"- Best mean rank under equal tuning, over the {full[best][1]} of {n} (setting, shape) pairs "
                   f"it was ranked on: **{best}** ({full[best][0]:.2f}); next: "
                   + ", ".join(f"{b} ({full[b][0]:.2f})" for b in sorted(full, key=lambda b: (full[b][0], b))[1:4])
                   + ".")
        rivals = [(b, h) for b in sorted(tuned) if b != best and (h := head_to_head(settings, best, b)) is not None]
        if rivals:
            out.append(f"- {best} against each other method under equal tuning, (shape, seed) pairs where its Avg. "
                       "Gap was lower, and its mean time relative to theirs: "
                       + "; ".join(f"{b} {h['wins']} of {h['pairs']} ({100 * h['wins'] / h['pairs']:.0f} %), "
                                   f"{h['time_ratio']:.2f}× time" for b, h in rivals) + ".")
    part = {b: r for b, r in tuned.items() if b not in full}
    if part:
        out.append("- Ranked on fewer shapes (their mean is over those only): "
                   + ", ".join(f"{b} ({r[0]:.2f} over {r[1]})" for b, r in sorted(part.items())) + ".")
    if defaults:
        dbest = min(defaults, key=lambda b: (defaults[b][0], b))
        out.append(f"- Best mean rank at reference defaults: **{dbest}** ({defaults[dbest][0]:.2f} over "
                   f"{defaults[dbest][1]} shapes).")
    has_tuned = {e.base for s in shapes for e in s.entries.values() if e.tuned}
    moves = sorted(((tuned[b][0] - defaults[b][0], b) for b in has_tuned if b in tuned and b in defaults),
                   key=lambda x: (-abs(x[0]), x[1]))
    if moves:
        out.append("- Tuning moved the mean rank most for: "
                   + ", ".join(f"{b} ({d:+.2f})" for d, b in moves[:3]) + " (negative = up).")
    for a, b, kinds, word in CLAIMS:
        h = head_to_head(settings, a, b, kinds)
        if h is None:
            out.append(f"- {a} vs {b} on {word} shapes: not measured (no {word} shape has both under equal tuning).")
            continue
        out.append(f"- {a} vs {b} on {word} shapes (equal tuning): {a} had the lower Avg. Gap in {h['wins']} of "
                   f"{h['pairs']} (shape, seed) pairs over {h['shapes']} shape(s); mean difference {a} − {b} "
                   f"{h['mean']:+.2f}; paired p < {ALPHA} in {a}'s favour on {h['sig_a']} shape(s), in {b}'s on "
                   f"{h['sig_b']}.")
    for st in settings:
        for p in pareto_panels(st):
            out.append(f"- Pareto-optimal in {st.name} over {len(p.shapes)} shape(s): "
                       + ", ".join(sorted(p.front, key=lambda k: p.points[k][0])) + ".")
    if untuned:
        out.append(f"- Not in these lines: {', '.join(st.name for st in untuned)} (reference defaults only, no "
                   "tuned rows); its own tables are above.")
    return out + [""]


# ---------------------------------------------------------------------------------------------
# the writer


def render(settings: list[Setting], plot_name: str | None, reading: str | None) -> str:
    """The whole Markdown document."""
    lines = ["# forgetkit leaderboard", ""]
    smoke = [s.name for s in settings if s.smoke]
    if smoke:
        lines += [f"> **Smoke run** ({', '.join(smoke)}): data, epochs and budgets were shrunk by `--smoke` to "
                  "check that the configuration works. These numbers are not results.", ""]
    smoke_tuned = sorted({r for st in settings for sh in st.shapes.values() for e in sh.entries.values()
                          for r in e.recipes() if "smoke-tuned" in r})
    if smoke_tuned:
        lines += [f"> **Smoke-tuned recipes** ({', '.join(f'`{r}`' for r in smoke_tuned)}): chosen by a search shrunk by "
                  "`--smoke`; their rows are not a tuning result.", ""]
    lines += ["Generated by `forgetkit report --leaderboard " + " ".join(str(s.run_dir) for s in settings)
              + "` from the runs' stores; do not edit by hand (the closing reading comes from `--reading`).", "",
              "Every cell is over seeds: Avg. Gap (mean |metric − Retrain on the same seed| over FA, RA, TA, MIA; "
              "lower is better) as mean ± half-width of the 95 % Student-t interval, `n<2` where one seed gave no "
              "spread. FA/RA/TA/MIA are means (MIA is SalUn's MIA-Efficacy); MIA-NN gap and U-LiRA accuracy "
              "appear on shapes where they were measured (class requests). Time is the unlearning time alone "
              "(Retrain's: its training time); speed-up = mean Retrain time / mean unlearning time over the same seeds. Rank 1 = lowest mean "
              "Avg. Gap among method rows (untuned and tuned together; Original and Retrain are not ranked). "
              "Recipe: the tuned recipe file a row's options came from, or the reference defaults.", ""]
    compared, untuned = split_by_tuning(settings)
    for st in settings:
        lines += [f"## {st.name}" + (" (smoke run)" if st.smoke else ""), "", f"{st.description}; run `{st.run_dir}`.", ""]
        if untuned and not st.tuned:
            lines += ["Every row of this setting ran at its reference defaults (no tuned recipes), so it stays out "
                      "of the summaries across settings, which compare methods under equal tuning.", ""]
        for shape in st.shapes.values():
            ranked = rank_shape(list(shape.entries.values()))
            lines += [f"### {st.name}: `{shape.name}`" + (f" ({shape.kind} request)" if shape.kind else ""), ""]
            lines += shape_table(shape, ranked)
        shapes = list(st.shapes.values())
        lines += [f"### {st.name}: across shapes", ""] + mean_rank_table(shapes)[0]
        lines += ["Rank of each method per shape (equal-tuning league):", ""] + rank_matrix(shapes)
    all_shapes = [s for st in compared for s in st.shapes.values()]
    if len(compared) > 1:
        over = f"the {len(all_shapes)} (setting, shape) pairs of the tuned settings" if untuned else \
            f"all {len(all_shapes)} (setting, shape) pairs"
        lines += [f"## Mean rank over {over}", ""] + mean_rank_table(all_shapes)[0]
    panels = [p for st in settings for p in pareto_panels(st)]
    if plot_name and panels:
        lines += ["## Gap vs time", "", f"![Avg. Gap vs unlearning time, Pareto-optimal rows in red]({plot_name})", "",
                  "Each point: a row's mean Avg. Gap and mean time over the panel's shapes (Retrain included: gap 0 "
                  "at its training time). A row is Pareto-optimal when no other row is both no slower and no "
                  "further from Retrain, and better in one.", ""] + pareto_lines(panels)
    lines += ours_lines(settings)
    lines += [f"## {READING_TITLE}", ""]
    lines += [reading.rstrip("\n"), ""] if reading is not None else automatic_reading(settings)
    return "\n".join(lines)


def write_leaderboard(run_dirs: list[str | Path], out: str | Path, reading: str | Path | None = None) -> Path:
    """Build ``out`` (Markdown) and ``<out stem>-pareto.png`` beside it from the run directories;
    every input is checked first and both files are replaced whole, so a failure leaves the old ones."""
    out = Path(out)
    dirs = [Path(d) for d in run_dirs]
    if not dirs:
        raise ValueError("--leaderboard needs at least one run directory")
    dup = sorted({str(d) for d in dirs if [x.resolve() for x in dirs].count(d.resolve()) > 1})
    if dup:
        raise ValueError(f"--leaderboard names {', '.join(dup)} twice; give each run directory once")
    if out.is_dir():
        raise ValueError(f"--out {out} is a directory; give the Markdown file to write, e.g. {out / 'leaderboard.md'}")
    text = None
    if reading is not None:
        rp = Path(reading)
        if not rp.is_file():
            raise FileNotFoundError(f"--reading {rp} does not exist; write it, or leave --reading out for the "
                                    "automatic summary")
        text = rp.read_text()
        if not text.strip():
            raise ValueError(f"--reading {rp} is empty; write the reading, or leave --reading out for the "
                             "automatic summary")
    settings = [load_setting(d) for d in dirs]
    names = [s.name for s in settings]
    same = sorted({n for n in names if names.count(n) > 1})
    if same:
        raise ValueError(f"runs {', '.join(str(s.run_dir) for s in settings if s.name in same)} are all named "
                         f"{same[0]!r}; each setting needs its own experiment name (one run directory per setting)")
    out.parent.mkdir(parents=True, exist_ok=True)
    plot = out.with_name(out.stem + "-pareto.png")
    panels = [p for st in settings for p in pareto_panels(st)]
    doc = render(settings, plot.name if panels else None, text)
    tmp_md, tmp_png = out.with_name(f".{out.name}.tmp"), plot.with_name(f".{plot.stem}.tmp.png")
    try:
        if panels:
            plot_panels(panels, tmp_png)
        tmp_md.write_text(doc)
        if panels:
            os.replace(tmp_png, plot)
        os.replace(tmp_md, out)
    finally:
        for t in (tmp_md, tmp_png):
            t.unlink(missing_ok=True)
    return out
