"""The leaderboard's Markdown tables: the opening answer, one table per shape, and the mean ranks
across shapes."""
from __future__ import annotations

import math

import numpy as np

from ..grid import ORIGINAL, RETRAIN
from ..intervals import fmt_ci
from .loading import Entry, Setting, Shape
from .ranking import Ranked, answer, league, league_ranks
from .statistics import mean_ranks

NOISE_MARK = "≈"
"""marks a row within seed noise of the best row of its shape"""
DIRTY_MARK = "‡"
"""marks a row run from uncommitted code: shown, never ranked"""


def _num(x: float | None, digits: int = 2) -> str:
    return "–" if x is None or not math.isfinite(x) else f"{x:.{digits}f}"


def fmt_p(p: float | None) -> str:
    if p is None:
        return "n<2"
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def answer_table(settings: list[Setting]) -> list[str]:
    """Which method for which request shape: the best under equal tuning with its Avg. Gap and 95 %
    interval, and the methods within seed noise of it, one line per (setting, shape)."""
    lines = ["| Setting | Request shape | Best method | Avg. Gap ↓ (95 % CI) | Within seed noise of the best |",
             "|---|---|---|---|---|"]
    for st in settings:
        for shape in st.shapes.values():
            a = answer(shape)
            if a is None:
                continue
            kind = f" ({shape.kind})" if shape.kind else ""
            close = ", ".join(a.close) if a.close else "none"
            if not a.measured:
                close = "– (one seed: no spread measured)"
            lines.append(f"| {st.name} | `{shape.name}`{kind} | **{a.best}** | {fmt_ci(a.gaps)} | {close} |")
    if len(lines) == 2:
        return []
    return lines + ["", "Under equal tuning (a method's tuned row where it has one). Within seed noise: the paired "
                    "t-test against the best on the seeds both share gives p ≥ 0.05 (or, without shared seeds, the "
                    "95 % intervals overlap); with few seeds that test has little power, so \"not within noise\" "
                    "is the informative statement.", ""]


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


def _rank_and_test(e: Entry, ranked: Ranked) -> tuple[str, str]:
    """(rank cell, "Δ vs best" cell) of a method row."""
    if e.dirty:
        return "–", "– (not ranked)"
    rank = _num(ranked.ranks.get(e.label), 1).removesuffix(".0") if e.label in ranked.ranks else "–"
    if ranked.noise.get(e.label) and e.label != ranked.best:
        rank += f" {NOISE_MARK}"
    if e.label == ranked.best:
        return rank, "best"
    if e.label in ranked.tests:
        d, p, n = ranked.tests[e.label]
        return rank, (f"{d:+.2f} (p {fmt_p(p)}, n={n})" if n else "– (no shared seed)")
    return rank, "–"


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
            rank, test = _rank_and_test(e, ranked)
            gap = fmt_ci(gaps) if gaps else ("**failed**" if e.failed else "– (no Retrain reference)")
        recipe = "–" if e.is_reference else (", ".join(f"`{x}`" for x in e.recipes()) or
                                              ("⚠ none recorded" if e.tuned else "defaults"))
        metrics = [_num(np.mean(e.values(k))) if e.values(k) else "–" for k in ("FA", "RA", "TA", "MIA")]
        metrics += [fmt_ci(e.values(k)) for k, _ in extra]
        t, speed = e.timing()
        timing = ["–" if t is None or e.label == ORIGINAL else f"{t:.3g}" if t < 100 else f"{t:.0f}",
                  "1.0×" if e.label == RETRAIN else "–" if e.label == ORIGINAL or speed is None else f"{speed:.1f}×"]
        n_all = len(e.ok) + len(e.failed)
        seeds = str(len(e.ok)) if not e.failed else f"{len(e.ok)} of {n_all} ({len(e.failed)} failed)"
        if e.label != RETRAIN and len(gaps) < len(e.ok):
            seeds += f"; gap on {len(gaps)} (no Retrain row for the others)"
        name = f"{e.name} {DIRTY_MARK}" if e.dirty else e.name
        lines.append("| " + " | ".join([rank, name, recipe, gap, test, *metrics, *timing, seeds,
                                        ", ".join(f"`{c}`" for c in e.commits())]) + " |")
        notes += [f"- {e.name}, seed {s}: failed — {msg}" for s, msg in e.errors().items()]
    n_shared = sorted({n for _, _, n in ranked.tests.values() if n})
    lines += ["", f"Δ vs best: paired difference in Avg. Gap to the best row (rank 1), over the seeds both "
              f"share (n), and the two-sided paired t-test's p. With n = {', '.join(map(str, n_shared)) or '–'} "
              "seeds the test has little power: p ≥ 0.05 does not show the rows are equal."]
    if any(ranked.noise.get(lbl) for lbl in ranked.ranks if lbl != ranked.best):
        lines[-1] += f" {NOISE_MARK}: within seed noise of the best (p ≥ 0.05, or overlapping 95 % intervals)."
    if ranked.best is not None and all(v is None for lbl, v in ranked.noise.items() if lbl != ranked.best) \
            and len(ranked.ranks) > 1:
        lines[-1] += " One seed: no spread was measured, so no row can be told apart from the best by noise."
    if any(e.dirty for e in rows):
        lines[-1] += (f" {DIRTY_MARK}: not reproducible (run from uncommitted code, a `+dirty` commit): shown, "
                      "not ranked.")
    if notes:
        lines += ["", "Failed rows (counted above, not dropped):", *notes]
    return lines + [""]


def _rank_cell(r: tuple[float, int] | None) -> str:
    return "–" if r is None else f"{r[0]:.2f}"


def mean_rank_table(shapes: list[Shape]) -> tuple[list[str], dict[str, tuple[float, int]], dict[str, tuple[float, int]]]:
    """Mean rank per method over shapes, at reference defaults and under equal tuning, and the change."""
    defaults = mean_ranks([league_ranks(s, tuned=False) for s in shapes])
    tuned = mean_ranks([league_ranks(s, tuned=True) for s in shapes])
    has_tuned = {e.base for s in shapes for e in s.entries.values() if e.tuned and e.ranked}
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

