"""The leaderboard's closing reading when none is given: facts computed from the numbers (best
mean ranks, what tuning changed, the papers' head-to-head claims, who is Pareto-optimal).

The claims it checks live in ``claims.yaml`` beside this module, keyed by registry names; a row is
matched to a claim through the name the benchmark gives that method's row
(:func:`forgetkit.bench.grid.cell_label`), so renaming a paper's spelling moves both together.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
import yaml

from ...methods import METHODS
from ...unlearn.weightings import WEIGHTINGS
from ..config import MethodSpec
from ..grid import cell_label
from ..intervals import ALPHA, paired_p
from .loading import Setting, split_by_tuning
from .plots import pareto_panels
from .ranking import league
from .tables import mean_rank_table

CLAIMS_FILE = Path(__file__).with_name("claims.yaml")
READING_TITLE = "What holds under equal tuning"


@dataclass(frozen=True)
class Claim:
    """A paper's claim: ``method`` has a lower Avg. Gap than ``baseline`` on shapes of ``kinds``."""

    method: str
    """shown name of the claimed method's row"""
    baseline: str
    kinds: tuple[str, ...]
    shapes: str
    """the word the reading uses for those shapes"""


def row_name(method: str, weighting: str = "uniform") -> str:
    """The name the benchmark gives the row of a registered method (with a registered weighting)."""
    if method not in METHODS:
        raise ValueError(f"{CLAIMS_FILE.name}: unknown method {method!r}; registered: {', '.join(METHODS.names())}")
    if weighting not in WEIGHTINGS:
        raise ValueError(f"{CLAIMS_FILE.name}: unknown weighting {weighting!r}; registered: "
                         f"{', '.join(WEIGHTINGS.names())}")
    return cell_label(MethodSpec(name=method), weighting, 1)[0]


@cache
def load_claims(path: Path = CLAIMS_FILE) -> tuple[tuple[Claim, ...], tuple[str, tuple[str, ...]]]:
    """(the claims, (our method, the baselines it must beat together)), as shown names."""
    raw = yaml.safe_load(path.read_text())
    claims = tuple(Claim(row_name(c["method"], c.get("weighting", "uniform")), row_name(c["baseline"]),
                         tuple(c["kinds"]), c["shapes"]) for c in raw["claims"])
    ours = raw["ours"]
    return claims, (row_name(ours["method"]), tuple(row_name(b) for b in ours["against"]))


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
            times.append((members[a].timing()[0], members[b].timing()[0]))
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
    """Per setting: how often our method beat the named baselines together (``ours`` in ``claims.yaml``)."""
    a, rivals = load_claims()[1]
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
    for claim in load_claims()[0]:
        a, b, kinds, word = claim.method, claim.baseline, claim.kinds, claim.shapes
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

