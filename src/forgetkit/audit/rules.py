"""The verdict rules: margins, the retrained model's expected shift, and how verdicts combine.

Every constant here was measured; the measurements are in docs/audit.md.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from .decision import combine_verdicts
from .types import Side

DEPLETED = 0.5
"""a class kept in part whose forget set holds more than this share of its training samples is
"depleted": the target comparison does not call it over-forgotten (retrained models sat at AUC
0.21 on a class that lost 91 % of its samples; docs/audit.md)"""
PROB_TOLERANCE = 0.02
"""a class removed whole is faithful only if its mean probability on its own images is at most this
(retrained models give a class they never saw 0.000–0.01; docs/audit.md)"""
TARGET_MARGIN = 0.02
"""AUC distance above 0.5 that the target comparison (model on forget vs original on held-out)
flags as under-forgotten"""
TARGET_MARGIN_BELOW = 0.10
"""AUC distance below 0.5 it flags as over-forgotten: wider, because a model retrained on less data
is less sure of unseen data than the original even where nothing is wrong (retrained models sat at
0.46–0.51 on the Fashion-MNIST grid of docs/audit.md and 0.37–0.51 on the MNIST-5k one; 0.05 flagged
38 % of the MNIST-5k Retrain requests, 0.10 flags 6 %)"""

RETRAIN_SLOPE = 1.25
"""learning-curve slope κ of :func:`retrain_shift`: the bottom of the target comparison's reference
range is the original on held-out samples of class c moved by κ·log(retained share of class c) in
log-odds, where a model retrained on fewer samples of the class would put them on small data.
Chosen on the MNIST-5k leaderboard's seed 0 alone (4,050 training images: a steep learning curve),
as the κ that puts its Retrain requests at target AUC 0.50 on average (0 gave 0.42, 1.0 0.49, 1.25
0.50, 1.5 0.52); measured on its other seeds and on Fashion-MNIST in docs/audit.md"""


def retrain_shift(forget_counts: dict, retain_counts: dict, slope: float = RETRAIN_SLOPE) -> dict[int, float]:
    """Per class kept in part, the log-odds by which a model retrained without the forget set is
    expected to be less sure of unseen samples of the class than the original: κ·log(r_c), r_c =
    retain_c / (retain_c + forget_c) its retained share of the class's training samples.

    Why: if a class's held-out error falls as a power of its training count, err ∝ n^−κ, the held-out
    log-odds (≈ −log err) rises by κ·log n, so retraining on r_c·n samples lowers it by κ·log(1/r_c).
    κ (the learning-curve exponent) is not known without training; its default was measured
    (docs/audit.md). Classes with no retain sample left (removed whole) get no entry: their own rule
    judges them. ``slope`` 0 turns the correction off (every shift 0).
    """
    if not isinstance(slope, (int, float)) or not np.isfinite(slope) or slope < 0:
        raise ValueError(f"retrain_slope must be a finite number >= 0, got {slope!r}")
    out = {}
    for c, f in forget_counts.items():
        f, r = int(f), int(retain_counts.get(c, 0))
        if f < 0 or r < 0:
            raise ValueError(f"class {c}: forget and retain counts must be >= 0, got {f} and {r}")
        if r > 0:
            out[int(c)] = float(slope) * float(np.log(r / (r + f)))
    return out


def combine(verdicts: list[str]) -> str:
    """One verdict from several, as the decision combines its parts, but "mixed" when some parts
    are under- and others over-forgotten (the target comparison's word)."""
    return combine_verdicts(verdicts, both="mixed")



VERDICTS = ("under-forgotten", "faithful", "over-forgotten", "inconclusive", "too few samples")
"""the verdicts of one comparison of classes kept in part (overall ones may also be "mixed")"""


def bracket_verdict(unmoved: str, moved: str) -> str:
    """One verdict from the target comparison against both ends of the reference's range.

    A retrained model is at most as sure of unseen data as the original (the unmoved reference) and
    at least as sure as the moved one (:func:`retrain_shift`), so: under-forgotten only if so
    against the unmoved reference (more sure than even the original is of unseen data),
    over-forgotten only if so against the moved one (less sure than even a model retrained on a
    small pool), faithful only if faithful against both; else inconclusive.
    """
    known = set(VERDICTS)
    if unmoved not in known or moved not in known:
        raise ValueError(f"verdicts must be among {sorted(known)}, got {unmoved!r} and {moved!r}")
    if "too few samples" in (unmoved, moved):
        return "too few samples"
    if unmoved == "under-forgotten":
        return "under-forgotten"
    if moved == "over-forgotten":
        return "over-forgotten"
    return "faithful" if unmoved == moved == "faithful" else "inconclusive"


def bracket_side(moved: Side, unmoved: Side) -> Side:
    """``moved``'s evidence with each verdict of a class kept in part, and the class-matched one,
    replaced by :func:`bracket_verdict` of the two; classes removed whole keep theirs (the
    reference does not enter their rule)."""
    per_class = [e if e.removed else replace(e, verdict=bracket_verdict(u.verdict, e.verdict))
                 for e, u in zip(moved.per_class, unmoved.per_class, strict=True)]
    if moved.kept_verdict is None:
        return replace(moved, per_class=per_class)
    kept = bracket_verdict(unmoved.kept_verdict, moved.kept_verdict)
    overall = replace(moved.overall, verdict=combine([kept] + [e.verdict for e in per_class if e.removed]))
    return Side(per_class, overall, moved.membership, kept)

