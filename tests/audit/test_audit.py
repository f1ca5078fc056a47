"""The retrain-free audit on constructed cases with known answers (real MNIST-5k data, tiny MLPs)."""
import json

import numpy as np
import pytest
import torch
from torch import nn

from forgetkit.audit import write_audit_report
from forgetkit.data import DATASETS
from forgetkit.data.base import Split, as_float
from forgetkit.audit import audit
from forgetkit.audit.scores import model_scores
from forgetkit.audit.statistics import compare_side
from forgetkit.models import build_model
from tiny_models import fit_tiny_mlp

FLAGS = ("under-forgotten", "over-forgotten")




@pytest.fixture(scope="module")
def case():
    """500 forget, 500 held-out, 500 retain samples; one model fit on the forget set only
    (it memorised it), one fit on the retain set only (it never saw forget or held-out)."""
    tr = DATASETS.get("mnist5k")().train
    perm = np.random.default_rng(1).permutation(len(tr))[:1500]
    held, forget, retain = perm[:500], perm[500:1000], perm[1000:]
    return {"tr": tr, "held": held, "forget": forget, "retain": retain,
            "memorised": fit_tiny_mlp(tr.subset(forget)), "retrained": fit_tiny_mlp(tr.subset(retain))}


def _audit(case, model, **kw):
    tr = case["tr"]
    return audit(model, tr.subset(case["forget"]), tr.subset(case["held"]), n_boot=100,
                 forget_indices=case["forget"], heldout_indices=case["held"], **kw)


def test_memorised_forget_set_is_flagged(case):
    r = _audit(case, case["memorised"])
    assert r.verdict == "under-forgotten"
    assert r.overall.auc > 0.55 and r.overall.p_adjusted < 0.05
    assert sum(e.verdict == "under-forgotten" for e in r.per_class) >= 3
    assert all(e.verdict != "over-forgotten" for e in r.per_class)


def test_model_trained_without_forget_set_is_not_flagged(case):
    r = _audit(case, case["retrained"])
    assert r.verdict not in FLAGS
    assert not [e.scope for e in r.per_class if e.verdict in FLAGS]
    assert abs(r.overall.auc - 0.5) < 0.05


def test_false_alarm_rate_on_unseen_splits(case):
    """Forget and held-out both unseen (random halves of 1,000 samples the model never saw): with
    alpha = 0.05 family-wise, at most 2 of 12 audits may flag anything (expected 0.6)."""
    tr, model = case["tr"], case["retrained"]
    unseen = np.concatenate([case["forget"], case["held"]])
    flagged = 0
    for s in range(12):
        p = np.random.default_rng(100 + s).permutation(unseen)
        r = audit(model, tr.subset(p[:500]), tr.subset(p[500:]), n_boot=50, seed=s)
        flagged += any(e.verdict in FLAGS for e in [r.overall] + r.per_class)
    assert flagged <= 2


def test_family_wise_false_alarm_rate_under_the_null():
    """Forget and held-out scores from one distribution per class (10 classes, 60 vs 40 samples):
    any flag at all, overall or in a class, in at most alpha = 5 % of 100 audits (+ 2 SD); 400
    audits measured 4.0 % (margin 0) and 4.25 % (margin 0.02)."""
    rng = np.random.default_rng(3)
    yf, yh = np.repeat(np.arange(10), 60), np.repeat(np.arange(10), 40)
    ok_f, ok_h = np.ones(600, bool), np.ones(400, bool)
    flagged = 0
    for s in range(100):
        side = compare_side(rng.normal(yf, 1.0), ok_f, yf, rng.normal(yh, 1.0), ok_h, yh, margin=0.0, n_boot=10, seed=s)
        flagged += any(e.verdict in FLAGS for e in [side.overall] + side.per_class)
    assert flagged / 100 <= 0.05 + 2 * np.sqrt(0.05 * 0.95 / 100)


def test_before_and_after(case):
    tr = case["tr"]
    r = _audit(case, case["retrained"], original=case["memorised"], retain=tr.subset(case["retain"]),
               test=tr.subset(case["held"][:100]))
    assert r.before is not None and r.before.overall.verdict == "under-forgotten"
    assert r.before.overall.auc > r.after.overall.auc + 0.05
    assert r.accuracy["forget"]["before"] == 100.0 > r.accuracy["forget"]["after"]
    assert set(r.accuracy) == {"forget", "heldout", "retain", "test"}
    assert r.after.membership.reference == "held-out + original"
    assert r.before.membership.auc > r.after.membership.auc
    assert r.before.membership.tpr_at_1pct_fpr > 0.01 and r.before.membership.tpr_at_0_1pct_fpr is None


def test_retain_accuracy_measured_elsewhere_is_shown_and_not_measured_again(case):
    """A benchmark row passes the RA it already has; the report shows it and the verdicts do not move."""
    tr = case["tr"]
    retain = tr.subset(case["retain"])
    kw = dict(original=case["memorised"], retain=retain, test=tr.subset(case["held"][:100]))
    measured = _audit(case, case["retrained"], **kw)
    given = _audit(case, case["retrained"], retain_accuracy={"after": 12.5, "before": 50.0}, **kw)
    assert given.accuracy["retain"] == {"after": 12.5, "before": 50.0}
    assert measured.accuracy["retain"]["after"] != 12.5
    assert given.verdict == measured.verdict and given.after.overall.auc == measured.after.overall.auc
    assert given.accuracy["test"] == measured.accuracy["test"]
    with pytest.raises(ValueError, match="retain_accuracy: unknown sides"):
        _audit(case, case["retrained"], retain_accuracy={"test": 1.0}, **kw)


def test_class_removed_whole_is_judged_by_whether_it_is_still_predicted(case):
    """Forget = every training sample of class 3. A model trained on everything still predicts
    class 3 (under-forgotten, whatever its forget and held-out class-3 samples' AUC); one trained
    without class 3 never predicts it (faithful)."""
    tr = case["tr"]
    pool = np.concatenate([case["forget"], case["retain"]])
    is3 = tr.y[pool].numpy() == 3
    f = tr.subset(pool[is3])
    kept = case["held"][tr.y[case["held"]].numpy() != 3][:200]
    h = tr.subset(np.concatenate([case["held"][tr.y[case["held"]].numpy() == 3], kept]))
    knows, never = fit_tiny_mlp(tr.subset(pool)), fit_tiny_mlp(tr.subset(pool[~is3]))
    r_knows = audit(knows, f, h, forget_classes=[3], n_boot=50)
    # 131 class-3 samples can show "at most 3 %" (k = 0 gives an upper bound of 2.3 %), not "at most 1 %"
    r_never = audit(never, f, h, forget_classes=[3], original=knows, n_boot=50, tolerance=0.03)
    assert audit(never, f, h, forget_classes=[3], n_boot=50).verdict == "inconclusive"
    assert r_knows.per_class[0].removed and r_knows.verdict == "under-forgotten"
    assert r_knows.per_class[0].acc_heldout > 50  # it still recognises unseen images of the class
    assert r_never.verdict == "faithful" and r_never.per_class[0].acc_heldout == 0.0
    assert r_never.before.overall.verdict == "under-forgotten"
    with pytest.raises(ValueError, match=r"forget_classes \[4\]"):
        audit(never, f, h, forget_classes=[4])


def test_scores_match_softmax_log_odds(case):
    tr, m = case["tr"], case["memorised"]
    s = tr.subset(case["held"][:50])
    phi, correct, width = model_scores(m, s, torch.device("cpu"), None, batch_size=7)
    with torch.no_grad():
        p = torch.softmax(m(as_float(s.x)).double(), 1)
    py = p[torch.arange(len(s)), s.y].numpy()
    np.testing.assert_allclose(phi, np.log(py) - np.log1p(-py), rtol=1e-4, atol=1e-4)
    assert width == 10 and correct.tolist() == (p.argmax(1) == s.y).tolist()


def test_overall_is_class_matched_and_small_classes_get_no_verdict():
    rng = np.random.default_rng(0)
    yf = np.repeat([0, 1, 2], [200, 100, 5])
    yh = np.repeat([0, 1, 2], [150, 150, 150])
    phi_f = rng.normal(yf * 3.0, 1) - 0.0
    phi_h = rng.normal(yh * 3.0, 1)
    side = compare_side(phi_f, np.ones(len(yf), bool), yf, phi_h, np.ones(len(yh), bool), yh, n_boot=50)
    w = np.array([200, 100, 5]) / 305
    assert side.overall.auc == pytest.approx(w @ [e.auc for e in side.per_class])
    assert side.per_class[2].verdict == "too few samples" and side.per_class[2].p_adjusted is None
    # pooled without matching classes, class 2's high scores would drag the AUC far from 0.5
    assert abs(side.overall.auc - 0.5) < 0.1


def test_over_forgotten_direction():
    rng = np.random.default_rng(1)
    yf, yh = np.repeat([0, 1], 300), np.repeat([0, 1], 300)
    side = compare_side(rng.normal(-1, 1, 600), np.ones(600, bool), yf, rng.normal(0, 1, 600),
                        np.ones(600, bool), yh, n_boot=50)
    assert side.overall.verdict == "over-forgotten" and side.overall.cliffs_delta < -0.2


class _Counting(nn.Module):
    def __init__(self, inner):
        super().__init__()
        self.inner, self.largest = inner, 0

    def forward(self, x):
        self.largest = max(self.largest, len(x))
        return self.inner(x)


def test_memory_only_per_sample_scalars(case):
    m = _Counting(case["retrained"])
    r = _audit(case, m, original=_Counting(case["memorised"]), batch_size=64)
    assert m.largest == 64
    arrays = [a for side in r.scores.values() for a in side.values()]
    assert all(a.ndim == 1 for a in arrays)


# ------------------------------------------------------------------------------------ bad input


def test_bad_inputs_are_value_errors(case):
    tr, m = case["tr"], case["retrained"]
    f, h = tr.subset(case["forget"]), tr.subset(case["held"])
    no_zero = h.subset(np.flatnonzero(h.y.numpy() != 0))
    with pytest.raises(ValueError, match=r"no samples of forget class\(es\) \[0\]"):
        audit(m, f, no_zero)
    with pytest.raises(ValueError, match="indices overlap"):
        audit(m, f, h, forget_indices=case["forget"], heldout_indices=np.r_[case["held"][:-1], case["forget"][0]])
    with pytest.raises(ValueError, match="identical to forget samples"):
        audit(m, f, Split(torch.cat([h.x, f.x[:3]]), torch.cat([h.y, f.y[:3]])))
    with pytest.raises(ValueError, match="original returns 12 outputs"):
        audit(m, f, h, original=build_model("mlp", (1, 28, 28), 12, hidden=8))
    with pytest.raises(ValueError, match="num_classes is 8"):
        audit(m, f, h, num_classes=8)
    with pytest.raises(ValueError, match="forget set is empty"):
        audit(m, f.subset([]), h)
    with pytest.raises(ValueError, match="shape"):
        audit(m, f, Split(h.x[:, :, :14], h.y))
    with pytest.raises(ValueError, match="must be a forgetkit Split"):
        audit(m, f.x, h)


def test_report_files(case, tmp_path):
    tr = case["tr"]
    r = _audit(case, case["retrained"], original=case["memorised"], test=tr.subset(case["held"][:100]))
    paths = write_audit_report(r, tmp_path / "a", method="rl", method_settings={"epochs": 3}, unlearn_seconds=2.5,
                               class_names=[str(i) for i in range(10)])
    assert sorted(p.name for p in paths.values()) == ["audit.html", "audit.json", "audit.md"]
    md = paths["audit.md"].read_text()
    assert f"Verdict: {r.verdict}" in md and "cannot show" in md and "| 3 |" in md and "Per class:" in md
    page = paths["audit.html"].read_text()
    assert "data:image/png;base64," in page and "<script" not in page and "src=\"http" not in page
    js = json.loads(paths["audit.json"].read_text())
    assert js["verdict"] == r.verdict and js["method"] == "rl"
    assert sum(js["forget_counts"].values()) == 500 and js["accuracy"]["test"]["before"] is not None
    assert js["after"]["overall"]["auc"] == pytest.approx(r.overall.auc)
    json.dumps(r.to_dict(), allow_nan=False)  # strict JSON for a run's store, too
    assert r.to_dict()["after"]["overall"]["p_ks"] is None


def test_report_warns_when_unseen_accuracy_collapses(case, tmp_path):
    tr = case["tr"]
    broken = build_model("mlp", (1, 28, 28), 10, hidden=64, depth=1)  # untrained: about 10 % accuracy
    r = audit(broken, tr.subset(case["forget"]), tr.subset(case["held"]), original=case["retrained"], n_boot=20)
    paths = write_audit_report(r, tmp_path)
    assert "Warning: accuracy on unseen data of the classes kept in part fell" in paths["audit.md"].read_text()
    assert json.loads(paths["audit.json"].read_text())["warning"].startswith("Warning")


def test_report_into_a_file_writes_nothing(case, tmp_path):
    r = _audit(case, case["retrained"])
    target = tmp_path / "taken"
    target.write_text("x")
    with pytest.raises(ValueError, match="not a directory"):
        write_audit_report(r, target)
    assert target.read_text() == "x" and sorted(p.name for p in tmp_path.iterdir()) == ["taken"]


# ------------------------------------------------------------------------------------ the CLI


def _cli(argv):
    import argparse

    from forgetkit.cli.audit import add_parser

    p = argparse.ArgumentParser()
    add_parser(p.add_subparsers(dest="command", required=True))
    args = p.parse_args(["audit", *argv])
    return args.func(args)


@pytest.fixture()
def files(case, tmp_path):
    tr = case["tr"]
    f, h = tr.subset(case["forget"]), tr.subset(case["held"])
    torch.save(case["retrained"].state_dict(), tmp_path / "after.pt")
    torch.save({"state_dict": case["memorised"].state_dict()}, tmp_path / "before.pt")
    torch.save({"x": f.x, "y": f.y, "indices": torch.as_tensor(case["forget"])}, tmp_path / "forget.pt")
    np.savez(tmp_path / "heldout.npz", x=h.x.numpy(), y=h.y.numpy(), indices=case["held"])
    return tmp_path


def _base(d):
    return ["--checkpoint", str(d / "after.pt"), "--model", "mlp", "--model-option", "hidden=64",
            "--model-option", "depth=1", "--forget", str(d / "forget.pt"), "--n-boot", "50"]


def test_cli_on_own_checkpoint_and_files(files, capsys):
    out = files / "report"
    assert _cli(_base(files) + ["--heldout", str(files / "heldout.npz"), "--original", str(files / "before.pt"),
                                "--out", str(out), "--method", "retrain"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["audit.html", "audit.json", "audit.md"]
    printed = capsys.readouterr().out
    assert "verdict:" in printed and "class 9" in printed
    js = json.loads((out / "audit.json").read_text())
    assert js["before"]["overall"]["verdict"] == "under-forgotten" and js["method"] == "retrain"
    d = js["decision"]
    assert f"mean p(true class) forget − held-out {d['prob_diff'][0]:+.3f}" in printed  # the interval behind the verdict


def test_cli_bad_inputs_write_nothing(files, case):
    out = files / "report"
    held = ["--heldout", str(files / "heldout.npz"), "--out", str(out)]
    (files / "junk.pt").write_bytes(b"not a checkpoint")
    bad = _base(files) + held
    with pytest.raises(ValueError, match="junk.pt. does not load"):
        _cli(["--checkpoint", str(files / "junk.pt")] + bad[2:])
    with pytest.raises(ValueError, match="does not load into mlp"):
        _cli([a if a != "hidden=64" else "hidden=32" for a in bad])
    with pytest.raises(ValueError, match="does not exist"):
        _cli(_base(files) + ["--heldout", str(files / "missing.npz"), "--out", str(out)])
    h = case["tr"].subset(case["held"])
    f = case["tr"].subset(case["forget"])
    np.savez(files / "dup.npz", x=np.concatenate([h.x.numpy(), f.x[:2].numpy()]),
             y=np.concatenate([h.y.numpy(), f.y[:2].numpy()]))
    with pytest.raises(ValueError, match="identical to forget samples"):
        _cli(_base(files) + ["--heldout", str(files / "dup.npz"), "--out", str(out)])
    np.savez(files / "overlap.npz", x=h.x.numpy(), y=h.y.numpy(), indices=np.r_[case["held"][:-1], case["forget"][0]])
    with pytest.raises(ValueError, match="indices overlap"):
        _cli(_base(files) + ["--heldout", str(files / "overlap.npz"), "--out", str(out)])
    with pytest.raises(ValueError, match="--forget-classes must be"):
        _cli(_base(files) + held + ["--forget-classes", "three"])
    np.savez(files / "small.npz", x=h.x[:, :, :20].numpy(), y=h.y.numpy())
    with pytest.raises(ValueError, match="shape"):
        _cli(_base(files) + ["--heldout", str(files / "small.npz"), "--out", str(out)])
    assert not out.exists()
