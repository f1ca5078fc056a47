"""Ranking one shape: method rows by mean Avg. Gap, each tested against the best, and the leagues
(reference defaults, equal tuning) the summaries across shapes compare."""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ..intervals import paired_p, within_noise
from .loading import Entry, Shape
from .statistics import average_ranks


@dataclass
class Ranked:
    """The ranking of one (setting, shape): ranks of method rows and each one's test against the best."""

    ranks: dict[str, float]
    best: str | None
    tests: dict[str, tuple[float, float | None, int]]
    """label → (mean paired difference row − best, p, seeds shared)"""
    noise: dict[str, bool | None] = field(default_factory=dict)
    """label → within seed noise of the best (the best itself: True); None where no spread was measured"""


def rank_shape(entries: list[Entry]) -> Ranked:
    """Rank method rows (not Original or Retrain, nor rows from uncommitted code) by mean Avg. Gap;
    test each against the best."""
    scores = {e.label: float(np.mean(list(e.gaps().values()))) for e in entries if e.ranked and e.gaps()}
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
    noise = {label: True if label == best else within_noise(by[best], by[label]) for label in scores}
    return Ranked(ranks, best, tests, noise)


def league(shape: Shape, tuned: bool) -> dict[str, Entry]:
    """base name → the row that represents the method: at reference defaults (untuned rows only),
    or under equal tuning (the tuned row where there is one, else the untuned row)."""
    out: dict[str, Entry] = {}
    for e in shape.entries.values():
        if not e.ranked or (e.tuned and not tuned):
            continue
        if e.base not in out or (tuned and e.tuned):
            out[e.base] = e
    return out


def league_ranks(shape: Shape, tuned: bool) -> dict[str, float]:
    """base name → rank within the league of this shape."""
    members = league(shape, tuned)
    ranks = rank_shape(list(members.values())).ranks
    return {base: ranks[e.label] for base, e in members.items() if e.label in ranks}


@dataclass
class Answer:
    """The opening answer for one (setting, shape): the best method under equal tuning and the
    methods whose Avg. Gap is within seed noise of it."""

    best: str
    gaps: list[float]
    """the best row's Avg. Gap per seed"""
    close: list[str]
    """other methods within seed noise of the best (paired test not significant)"""
    measured: bool
    """False where the best had one seed: no spread was measured, so nothing can be called close"""


def answer(shape: Shape) -> Answer | None:
    """The best method of the shape's equal-tuning league and those within noise of it; None when
    no method row has a gap."""
    members = league(shape, tuned=True)
    ranked = rank_shape(list(members.values()))
    if ranked.best is None:
        return None
    by_label = {e.label: base for base, e in members.items()}
    close = sorted((by_label[lbl] for lbl, near in ranked.noise.items() if near and lbl != ranked.best),
                   key=lambda b: (ranked.ranks[members[b].label], b))
    best = members[by_label[ranked.best]]
    return Answer(by_label[ranked.best], list(best.gaps().values()), close, len(best.gaps()) > 1)
