"""The target comparison (model on forget vs the original on held-out) and the retrain-free Avg. Gap
estimate, on constructed cases with known answers (real MNIST-5k data, tiny MLPs)."""
import numpy as np
import pytest
import torch
from torch import nn

from forgetkit import stats
from forgetkit.data import DATASETS
from forgetkit.audit import audit, audit_scores
from tiny_models import fit_tiny_mlp




class Cooled(nn.Module):
    """A model whose logits are divided by ``t``: less confident on everything alike (what RL does)."""

    def __init__(self, m: nn.Module, t: float):
        super().__init__()
        self.m, self.t = m, t

    def forward(self, x):
        return self.m(x) / self.t


@pytest.fixture(scope="module")
def case():
    """Original fit on forget + retain; retrained fit on retain only (same steps and seed)."""
    tr = DATASETS.get("mnist5k")().train
    perm = np.random.default_rng(2).permutation(len(tr))[:2000]
    held, forget, retain = perm[:500], perm[500:1000], perm[1000:]
    return {"tr": tr, "held": tr.subset(held), "forget": tr.subset(forget), "retain": tr.subset(retain),
            "original": fit_tiny_mlp(tr.subset(np.concatenate([forget, retain]))), "retrained": fit_tiny_mlp(tr.subset(retain))}


def _audit(case, model, **kw):
    return audit(model, case["forget"], case["held"], original=case["original"], retain=case["retain"],
                 test=case["held"], n_boot=100, check_duplicates=False, **kw)


def test_target_flags_the_original_as_under_and_not_the_retrained_model(case):
    assert _audit(case, case["original"]).target.overall.verdict == "under-forgotten"
    r = _audit(case, case["retrained"])
    assert r.target.overall.verdict not in ("under-forgotten", "over-forgotten")
    assert abs(r.target.overall.auc - 0.5) < 0.05


def test_a_model_less_confident_on_everything_is_over_forgotten_by_the_target_only(case):
    """Cooling the retrained model leaves forget and held-out samples alike to it (the same-model
    AUC stays where it was) but puts its confidence far below what the original has on
    unseen data: the target comparison calls it over-forgotten, as a Retrain-based gap would."""
    r = _audit(case, Cooled(case["retrained"], 4.0))
    assert r.after.overall.auc == pytest.approx(_audit(case, case["retrained"]).after.overall.auc, abs=0.01)
    assert r.after.overall.verdict not in ("under-forgotten", "over-forgotten")
    assert r.target.overall.verdict == "over-forgotten" and r.target.overall.auc < 0.3


def test_target_auc_is_the_slow_pairwise_count(case):
    r = _audit(case, case["retrained"])
    a, b = r.scores["after"], r.scores["before"]
    shift = r.settings["reference_shift"]  # the retained share of each class moves the reference
    assert all(d < 0 for d in shift.values())
    for e in r.target.per_class[:3]:
        f, h = a["forget"][a["forget_y"] == e.cls], b["heldout"][b["heldout_y"] == e.cls] + shift[str(e.cls)]
        slow = np.mean([(x > y) + 0.5 * (x == y) for x in f for y in h])
        assert e.auc == pytest.approx(slow, abs=1e-12)
    w = np.array([e.n_forget for e in r.target.per_class], float)
    assert r.target.overall.auc == pytest.approx(w @ [e.auc for e in r.target.per_class] / w.sum())


def test_estimated_gap_is_small_for_the_retrained_model_and_large_for_a_damaged_one(case):
    good, bad = _audit(case, case["retrained"]), _audit(case, fit_tiny_mlp(case["retain"].subset(np.arange(40)), 50))
    assert good.estimated_gap < 5.0 < bad.estimated_gap
    a = good.accuracy
    # a retrained model's forget set is unseen data to it: FA* is the model's own held-out accuracy
    fa_star = np.mean([e.acc_heldout for e in good.after.per_class for _ in range(e.n_forget)])
    slow = np.mean([abs(a["forget"]["after"] - fa_star), abs(a["retain"]["after"] - a["retain"]["before"]),
                    abs(a["test"]["after"] - a["test"]["retrained estimate"])])
    assert good.estimated_gap == pytest.approx(slow)
    assert audit(case["retrained"], case["forget"], case["held"], n_boot=10, check_duplicates=False).estimated_gap is None


def test_a_class_removed_whole_counts_zero_in_the_estimate():
    """FA* and TA* count a removed class as never predicted (a retrained model never saw it)."""
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1], 50)
    d = {"forget": rng.normal(size=100), "forget_correct": np.ones(100, bool), "forget_y": y,
         "heldout": rng.normal(size=100), "heldout_correct": np.ones(100, bool), "heldout_y": y}
    acc = {"retain": {"after": 90.0, "before": 90.0}, "test": {"after": 80.0, "before": 90.0, "retrained estimate": 45.0}}
    r = audit_scores(d, d, num_classes=2, forget_classes=[1], accuracy=acc, n_boot=10)
    # FA = 100 against FA* = (50·100 + 50·0) / 100 = 50; RA 0; TA |80 − 45| = 35
    assert r.estimated_gap == pytest.approx(np.mean([50.0, 0.0, 35.0]))
    acc["test"].pop("retrained estimate")
    assert audit_scores(d, d, num_classes=2, forget_classes=[1], accuracy=acc, n_boot=10).estimated_gap == pytest.approx(25.0)


def test_target_margin_is_validated():
    d = {"forget": np.zeros(30), "forget_correct": np.ones(30, bool), "forget_y": np.zeros(30, int),
         "heldout": np.zeros(30), "heldout_correct": np.ones(30, bool), "heldout_y": np.zeros(30, int)}
    with pytest.raises(ValueError, match="margin"):
        audit_scores(d, d, num_classes=1, target_margin=0.6)
    assert stats.verdict(0.5, (0.49, 0.51), 1.0, margin=0.05) == "faithful"


def test_a_removed_class_is_judged_on_the_models_own_predictions_in_the_target_too():
    """The original still recognises held-out images of the removed class; the unlearned model does
    not: the target side must count the unlearned model's predictions, not the original's."""
    y = np.repeat([0, 1], 200)
    gone = np.where(y == 1, -10.0, 2.0) + np.random.default_rng(0).normal(0, 0.1, 400)  # p(class 1) ≈ 5e-5
    after = {"forget": gone, "forget_correct": y == 0, "forget_y": y,
             "heldout": gone.copy(), "heldout_correct": y == 0, "heldout_y": y}
    before = after | {"forget": gone * 0 + 3.0, "heldout": gone * 0 + 2.0,
                      "forget_correct": np.ones(400, bool), "heldout_correct": np.ones(400, bool)}
    r = audit_scores(after, before, num_classes=2, forget_classes=[1], n_boot=10)
    one = [e for e in r.target.per_class if e.cls == 1][0]
    assert one.removed and one.verdict == "faithful" and one.acc_heldout == 0.0
    assert [e for e in r.before.per_class if e.cls == 1][0].verdict == "under-forgotten"
    # never predicted, but still given probability 0.12 on average: a trace a retrained model would not leave
    faint = after | {"forget": np.where(y == 1, -2.0, 2.0), "heldout": np.where(y == 1, -2.0, 2.0)}
    r = audit_scores(faint, before, num_classes=2, forget_classes=[1], n_boot=10)
    assert [e for e in r.target.per_class if e.cls == 1][0].verdict == "under-forgotten"


def test_mean_above_test_is_the_t_test():
    from scipy import stats as st

    x = np.random.default_rng(4).random(50) * 0.1
    p, upper = stats.mean_above_test(x, 0.04)
    t = (x.mean() - 0.04) / (x.std(ddof=1) / np.sqrt(50))
    assert p == pytest.approx(1 - st.t.cdf(t, 49)) and upper == pytest.approx(
        x.mean() + st.t.ppf(0.95, 49) * x.std(ddof=1) / np.sqrt(50))


def test_kept_classes_overshot_and_a_removed_class_still_known_moved_both_ways():
    rng = np.random.default_rng(5)
    y = np.repeat([0, 1], 200)
    before = {"forget": rng.normal(2, 1, 400), "forget_correct": np.ones(400, bool), "forget_y": y,
              "heldout": rng.normal(2, 1, 400), "heldout_correct": np.ones(400, bool), "heldout_y": y}
    # class 0 (kept in part) pushed far below the original's unseen level; class 1 (removed whole) still predicted
    after = before | {"forget": np.where(y == 0, rng.normal(-3, 1, 400), 2.0)}
    r = audit_scores(after, before, num_classes=2, forget_classes=[1], n_boot=20)
    assert r.target.kept_verdict == "over-forgotten" and r.verdict == "moved both ways"
    assert [d.verdict for d in r.class_decisions] == ["over-forgotten", "under-forgotten"]


def test_a_depleted_class_is_never_called_over_forgotten():
    """A class that lost most of its training samples: a model retrained on the rest is much less
    sure of it than the original, so the target comparison must not call it over-forgotten; the
    overall verdict follows the other classes."""
    rng = np.random.default_rng(6)
    y = np.repeat([0, 1], 300)
    before = {"forget": rng.normal(2, 1, 600), "forget_correct": np.ones(600, bool), "forget_y": y,
              "heldout": rng.normal(2, 1, 600), "heldout_correct": np.ones(600, bool), "heldout_y": y}
    after = before | {"forget": np.where(y == 1, rng.normal(-1, 1, 600), rng.normal(2, 1, 600))}
    kw = dict(num_classes=2, n_boot=50)
    assert audit_scores(after, before, retain_counts={0: 3000, 1: 3000}, **kw).target.per_class[1].verdict == "over-forgotten"
    r = audit_scores(after, before, retain_counts={0: 3000, 1: 100}, **kw)  # class 1: 300 of 400 forgotten
    assert r.settings["depleted_classes"] == [1]
    assert r.target.per_class[1].verdict == "inconclusive" and r.target.kept_verdict == "inconclusive"
    gone = audit_scores(after, before, retain_counts={0: 3000}, **kw)  # no class 1 left: removed whole
    assert gone.settings["forget_classes"] == [1] and gone.target.per_class[1].removed


def test_no_damage_warning_for_a_class_removed_whole(tmp_path):
    """Unseen images of a removed class should stop being recognised: that fall is not damage."""
    from forgetkit.audit import write_audit_report

    y = np.repeat([0, 1], 200)
    before = {"forget": np.full(400, 3.0), "forget_correct": np.ones(400, bool), "forget_y": y,
              "heldout": np.full(400, 2.0), "heldout_correct": np.ones(400, bool), "heldout_y": y}
    after = before | {"forget": np.full(400, -10.0), "heldout": np.full(400, -10.0),
                      "forget_correct": np.zeros(400, bool), "heldout_correct": np.zeros(400, bool)}
    r = audit_scores(after, before, num_classes=3, forget_classes=[0, 1], n_boot=10)
    assert r.verdict == "faithful"
    assert "Warning" not in write_audit_report(r, tmp_path / "a")["audit.md"].read_text()
    kept = audit_scores(after, before, num_classes=3, n_boot=10)  # the same fall on classes kept in part: damage
    assert "Warning: accuracy on unseen data" in write_audit_report(kept, tmp_path / "b")["audit.md"].read_text()


def test_retrain_shift_is_the_slow_log_of_the_retained_share():
    import math

    from forgetkit.audit.rules import retrain_shift

    rng = np.random.default_rng(7)
    forget = {c: int(rng.integers(0, 200)) for c in range(10)}
    retain = {c: int(rng.integers(1, 400)) for c in range(10)}
    got = retrain_shift(forget, retain, 1.3)
    for c in range(10):
        assert got[c] == pytest.approx(1.3 * math.log(retain[c] / (retain[c] + forget[c])), abs=1e-12)
    # known answers: half of a class kept at slope 1 is −log 2; slope 0 moves nothing; no retain left: no entry
    assert retrain_shift({0: 50, 1: 10}, {0: 50}, 1.0) == {0: pytest.approx(-math.log(2.0))}
    assert set(retrain_shift(forget, retain, 0.0).values()) == {0.0}
    for bad in (-0.5, float("nan"), float("inf"), "1"):
        with pytest.raises(ValueError, match="retrain_slope"):
            retrain_shift(forget, retain, bad)
    with pytest.raises(ValueError, match="counts must be >= 0"):
        retrain_shift({0: -1}, {0: 5}, 1.0)


def _shifted_case(slope_true: float, share: float, n: int = 400, seed: int = 8):
    """Scores where a retrained model's forget scores sit ``slope_true``·log(share) below the
    original's held-out scores (what a model retrained on ``share`` of each class does)."""
    rng = np.random.default_rng(seed)
    y = np.repeat([0, 1], n // 2)
    before = {"forget": rng.normal(5, 1, n), "forget_correct": np.ones(n, bool), "forget_y": y,
              "heldout": rng.normal(3, 1, n), "heldout_correct": np.ones(n, bool), "heldout_y": y}
    after = before | {"forget": rng.normal(3 + slope_true * np.log(share), 1, n)}
    forgot = n // 2  # per class in the forget set; retain so that `share` of each class is kept
    retain = {0: int(round(forgot * share / (1 - share))), 1: int(round(forgot * share / (1 - share)))}
    return after, before, retain


def test_the_reference_moves_by_the_retrain_shift():
    """The target AUC is the slow pairwise count against the original's held-out scores plus the shift."""
    from forgetkit.audit.rules import retrain_shift

    after, before, retain = _shifted_case(1.5, 0.6)
    r = audit_scores(after, before, num_classes=2, retain_counts=retain, retrain_slope=1.5, n_boot=20)
    shift = retrain_shift({0: 200, 1: 200}, retain, 1.5)
    assert r.settings["reference_shift"] == {str(c): pytest.approx(d) for c, d in shift.items()}
    for e in r.target.per_class:
        f = after["forget"][after["forget_y"] == e.cls]
        h = before["heldout"][before["heldout_y"] == e.cls] + shift[e.cls]
        assert e.auc == pytest.approx(np.mean([(x > z) + 0.5 * (x == z) for x in f for z in h]), abs=1e-12)
    # without retain counts nothing is known about the retained share: no shift
    assert audit_scores(after, before, num_classes=2, retrain_slope=1.5, n_boot=20).settings["reference_shift"] is None
    with pytest.raises(ValueError, match="retrain_slope"):
        audit_scores(after, before, num_classes=2, retain_counts=retain, retrain_slope=-1.0)


def test_the_shift_clears_a_retrained_model_and_still_flags_one_that_kept_its_forget_set():
    """A model retrained on 60 % of each class sits 0.77 log-odds below the original on unseen
    data: uncorrected (slope 0) the target comparison calls it over-forgotten; with the shift it is
    not flagged. The original itself (it memorised the forget set) stays under-forgotten."""
    after, before, retain = _shifted_case(1.5, 0.6)
    kw = dict(num_classes=2, retain_counts=retain, n_boot=100, target_margin_below=0.05)
    assert audit_scores(after, before, retrain_slope=0.0, **kw).target.kept_verdict == "over-forgotten"
    assert audit_scores(after, before, retrain_slope=1.5, **kw).target.kept_verdict not in ("under-forgotten", "over-forgotten")
    assert audit_scores(before, before, retrain_slope=1.5, **kw).target.kept_verdict == "under-forgotten"


def test_the_report_says_how_far_the_reference_moved(tmp_path):
    from forgetkit.audit import write_audit_report

    after, before, retain = _shifted_case(1.5, 0.6)
    r = audit_scores(after, before, num_classes=2, retain_counts=retain, retrain_slope=1.25, n_boot=10)
    text = write_audit_report(r, tmp_path / "a", class_names=["zero", "one"])["audit.md"].read_text()
    assert "1.25 × log(share of the class's training samples kept): 0 zero -0.64, 1 one -0.64" in text
    assert "AUC vs unmoved" in text and "under-forgotten needs the AUC against the unmoved" in text
    plain = write_audit_report(audit_scores(after, before, num_classes=2, n_boot=10), tmp_path / "b")["audit.md"]
    assert "retain counts were not given" in plain.read_text()


def test_bracket_verdict_is_the_verdict_that_holds_for_every_reference_in_the_range():
    """Slow definition: the reference lies anywhere between the moved and the unmoved end; a flag
    must hold at the end least favourable to it, "faithful" at both ends."""
    from forgetkit.audit.rules import VERDICTS, bracket_verdict

    for u in VERDICTS:
        for m in VERDICTS:
            if "too few samples" in (u, m):
                want = "too few samples"
            elif u == "under-forgotten":  # above even the top of the range
                want = "under-forgotten"
            elif m == "over-forgotten":  # below even the bottom
                want = "over-forgotten"
            elif {u, m} == {"faithful"}:
                want = "faithful"
            else:
                want = "inconclusive"
            assert bracket_verdict(u, m) == want, (u, m)
    with pytest.raises(ValueError, match="verdicts must be among"):
        bracket_verdict("mixed", "faithful")


def test_a_model_between_the_ends_of_the_range_is_not_flagged():
    """Halfway between the original's unseen level and the moved one: a model retrained on a
    larger pool than the slope was measured on (Fashion-MNIST at 12,000 images). The moved reference
    alone would call it under-forgotten; the bracket must not; the unmoved side is kept."""
    rng = np.random.default_rng(9)
    after, before, retain = _shifted_case(1.25, 0.6, n=4000)
    after = after | {"forget": rng.normal(3 + 0.5 * 1.25 * np.log(0.6), 1, 4000)}
    kw = dict(num_classes=2, retain_counts=retain, n_boot=100)
    r = audit_scores(after, before, retrain_slope=1.25, **kw)
    assert r.target.overall.auc > 0.52  # the moved end alone: above the band
    assert r.target_unmoved.overall.auc < 0.5
    assert r.target.kept_verdict not in ("under-forgotten", "over-forgotten")
    assert all(e.verdict not in ("under-forgotten", "over-forgotten") for e in r.target.per_class)
    assert audit_scores(after, before, retrain_slope=0.0, **kw).target_unmoved is None
