"""The audit's results: evidence per comparison, the membership score, one side, the whole audit."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from .decision import Decision

@dataclass(frozen=True)
class Evidence:
    """One forget-vs-unseen comparison (one class, or all classes class-matched)."""

    scope: str
    """"class 3" or "overall\""""
    cls: int | None
    n_forget: int
    n_heldout: int
    auc: float
    """P(forget sample looks more familiar than an unseen one of its class); 0.5 = indistinguishable"""
    ci_low: float
    ci_high: float
    p_value: float
    """per class: Mann–Whitney U (a class removed whole: one-sided binomial test of still predicting
    it more often than the tolerance); overall: the stratified rank test over classes"""
    p_ks: float | None
    """per class: two-sample Kolmogorov–Smirnov; None overall (classes mix)"""
    p_adjusted: float | None
    """per class 2 × Holm over the decided classes, overall 2 × p (α split in halves; the family-wise
    false-alarm rate stays ≤ α); None when the class has too few samples"""
    mean_prob_forget: float
    mean_prob_heldout: float
    mean_loss_forget: float
    mean_loss_heldout: float
    acc_forget: float
    acc_heldout: float
    verdict: str
    removed: bool = False
    """the class is forgotten whole: judged by how often the model still predicts it (acc_forget, acc_heldout)"""

    @property
    def cliffs_delta(self) -> float:
        """2·AUC − 1: the effect size on a −1..1 scale (0 = no difference)."""
        return 2.0 * self.auc - 1.0

    def to_dict(self) -> dict:
        return asdict(self) | {"cliffs_delta": self.cliffs_delta}


@dataclass(frozen=True)
class Membership:
    """The retrain-free membership attack: can a threshold on a likelihood ratio pick out forget samples?"""

    reference: str
    """"held-out" (non-members only) or "held-out + original" (original's outputs as members)"""
    n_members: int
    n_nonmembers: int
    n_excluded: int
    """forget samples of classes too small to fit the reference distributions"""
    auc: float | None
    tpr_at_1pct_fpr: float | None
    tpr_at_0_1pct_fpr: float | None

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Side:
    """Evidence about one model (the unlearned one, or the original for "before")."""

    per_class: list[Evidence]
    overall: Evidence
    membership: Membership
    kept_verdict: str | None = None
    """the verdict of the class-matched AUC over the classes kept in part alone (None when every
    class is removed whole); ``overall.verdict`` also folds in the classes removed whole"""

    def to_dict(self) -> dict:
        return {"overall": self.overall.to_dict(), "per_class": [e.to_dict() for e in self.per_class],
                "membership": self.membership.to_dict(), "kept_verdict": self.kept_verdict}


@dataclass
class AuditResult:
    """The audit of one deletion: after (the model under test) and, with ``original``, before."""

    num_classes: int
    after: Side
    before: Side | None
    accuracy: dict[str, dict[str, float]]
    """split → {"after": %, "before": %}; forget and held-out always, retain/test when given"""
    settings: dict
    seconds: float
    scores: dict[str, dict[str, np.ndarray]] = field(repr=False)
    """"after"/"before" → the per-sample arrays of :data:`SCORE_KEYS` (histograms, a run's store)"""
    target: Side | None = None
    """with ``original``: the forget samples under the model against held-out samples under the
    *original*, moved by :func:`retrain_shift` — is the model's confidence on them where a model
    that never saw them would put it? Its verdicts bracket the reference (:func:`bracket_verdict`)"""
    target_unmoved: Side | None = None
    """the same comparison against the original's held-out scores as they are (the top of the
    bracket); None when the reference was not moved"""
    decision: Decision | None = None
    """the verdict (:mod:`forgetkit.audit.decision`): the model's forget set against its own unseen data"""
    class_decisions: list[Decision] = field(default_factory=list)
    before_decision: Decision | None = None
    """the same decision on the original: what there was to forget (its memorisation)"""

    @property
    def estimated_gap(self) -> float | None:
        """Retrain-free estimate of Avg. Gap without its MIA term (points): :func:`gap_estimate` with
        the model's own held-out accuracy as FA*."""
        return gap_estimate(self, "own")

    @property
    def verdict(self) -> str:
        """The headline: the decision's verdict (stores written before it existed: the target
        comparison's, else the same-model comparison's)."""
        if self.decision is not None:
            return self.decision.verdict
        return (self.target or self.after).overall.verdict

    @property
    def per_class(self) -> list[Evidence]:
        return self.after.per_class

    @property
    def overall(self) -> Evidence:
        return self.after.overall

    def counts(self) -> dict[int, int]:
        """Forget samples per class: what was asked."""
        return {e.cls: e.n_forget for e in self.after.per_class}

    def to_dict(self) -> dict:
        """JSON-ready: NaN as None, per-sample scores left out (for a run's store or audit.json)."""
        return jsonable({"verdict": self.verdict, "same_model_verdict": self.after.overall.verdict,
                "num_classes": self.num_classes, "after": self.after.to_dict(),
                "before": None if self.before is None else self.before.to_dict(),
                "target": None if self.target is None else self.target.to_dict(),
                "target_unmoved": None if self.target_unmoved is None else self.target_unmoved.to_dict(),
                "decision": None if self.decision is None else self.decision.to_dict(),
                "class_decisions": [d.to_dict() for d in self.class_decisions],
                "before_decision": None if self.before_decision is None else self.before_decision.to_dict(),
                "estimated_gap": self.estimated_gap, "accuracy": self.accuracy,
                "settings": self.settings, "seconds": self.seconds,
                "forget_counts": {str(k): v for k, v in self.counts().items()}})


def gap_estimate(result: AuditResult, fa_reference: str = "own") -> float | None:
    """Retrain-free estimate of Avg. Gap without its MIA term (points): the mean of |FA − FA*|,
    |RA − RA before| and |TA − TA*|, where a retrained model is taken to have, on forget samples of
    classes kept in part, the held-out accuracy of the model itself (``fa_reference="own"``: a
    retrained model's forget set is unseen data to it) or of the original (``"original"``), and 0
    on classes removed whole (FA*); the original's retain accuracy; and the original's test
    accuracy with the removed classes counted wrong (TA*, ``accuracy["test"]["retrained
    estimate"]``; without it, TA before when no class is removed whole, else the TA term is left
    out). None without ``original`` or retain accuracies."""
    a = result.accuracy
    if result.before is None or "before" not in a.get("retain", {}):
        return None
    side = result.after if fa_reference == "own" else result.before
    n = np.array([e.n_forget for e in side.per_class], float)
    fa_star = float(n @ [0.0 if e.removed else e.acc_heldout for e in side.per_class] / n.sum())
    terms = [abs(a["forget"]["after"] - fa_star), abs(a["retain"]["after"] - a["retain"]["before"])]
    test = a.get("test", {})
    removed = any(e.removed for e in result.before.per_class)
    if "retrained estimate" in test:
        terms.append(abs(test["after"] - test["retrained estimate"]))
    elif "before" in test and not removed:
        terms.append(abs(test["after"] - test["before"]))
    return float(np.mean(terms))


def jsonable(o):
    """``o`` with NaN/inf as None and numpy scalars as Python numbers, so strict JSON accepts it."""
    if isinstance(o, dict):
        return {str(k): jsonable(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [jsonable(v) for v in o]
    if isinstance(o, (float, np.floating)):
        return float(o) if np.isfinite(o) else None
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.bool_):
        return bool(o)
    return o


def _evidence_from(d: dict) -> Evidence:
    names = {f for f in Evidence.__dataclass_fields__}
    kw = {k: v for k, v in d.items() if k in names}
    for k, f in Evidence.__dataclass_fields__.items():
        if f.type == "float" and kw.get(k) is None:
            kw[k] = float("nan")  # stored as None by :func:`jsonable`
    return Evidence(**kw)


def _side_from(d: dict | None) -> Side | None:
    if d is None:
        return None
    return Side([_evidence_from(e) for e in d["per_class"]], _evidence_from(d["overall"]),
                Membership(**d["membership"]), d.get("kept_verdict"))


def _decision_from(d: dict | None) -> Decision | None:
    if d is None:
        return None
    nan = lambda v: float("nan") if v is None else v  # noqa: E731  stored as None by :func:`jsonable`
    return Decision(**(d | {"prob_diff": tuple(map(nan, d["prob_diff"])), "acc_diff": tuple(map(nan, d["acc_diff"]))}))


def result_from_dict(d: dict, scores: dict[str, dict[str, np.ndarray]] | None = None) -> AuditResult:
    """The :class:`AuditResult` that :meth:`AuditResult.to_dict` stored (a run's store keeps the
    dict, not the object); ``scores``: the per-sample arrays for the histograms, if kept."""
    try:
        return AuditResult(int(d["num_classes"]), _side_from(d["after"]), _side_from(d.get("before")),
                           d["accuracy"], d["settings"], float(d["seconds"]), scores or {},
                           _side_from(d.get("target")), _side_from(d.get("target_unmoved")),
                           _decision_from(d.get("decision")),
                           [_decision_from(x) for x in d.get("class_decisions") or []],
                           _decision_from(d.get("before_decision")))
    except (KeyError, TypeError) as e:
        raise ValueError(f"stored audit is damaged or from another version ({type(e).__name__}: {e})") from None
