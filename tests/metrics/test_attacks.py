"""Evaluation attacks on constructed outputs whose right answer is known."""
import numpy as np
import pytest
import torch
from scipy.stats import norm
from sklearn.svm import SVC

from forgetkit.metrics.attacks import (
    eer_balanced_accuracy,
    kodge_svm_mia,
    lira_scores,
    logit_confidence,
    mia_efficacy,
    mia_efficacy_sets,
    mia_nn,
    mia_nn_class_score,
    true_class_prob,
    ulira,
    ulira_scores,
)


def member_conf(rng, n):
    """Training-sample confidences: close to 1."""
    return 1.0 - rng.uniform(0.0, 0.02, n)


def nonmember_conf(rng, n):
    """Unseen-sample confidences: spread low."""
    return rng.uniform(0.05, 0.7, n)


# ---------------------------------------------------------------- statistics


def test_logit_confidence_matches_naive_float64():
    rng = np.random.default_rng(0)
    z = rng.normal(scale=3.0, size=(200, 7))
    y = rng.integers(0, 7, 200)
    p = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    py = p[np.arange(200), y]
    np.testing.assert_allclose(logit_confidence(z, y), np.log(py / (1 - py)), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(logit_confidence(p, y, from_probs=True), np.log(py / (1 - py)), rtol=1e-8)
    np.testing.assert_allclose(true_class_prob(torch.tensor(z, dtype=torch.float32), torch.tensor(y)), py, rtol=1e-5)


def test_logit_confidence_is_finite_where_p_rounds_to_one():
    z = np.array([[60.0, 0.0, 0.0]])
    phi = logit_confidence(z, np.array([0]))
    assert np.isfinite(phi).all() and phi[0] == pytest.approx(60.0 - np.log(2.0))


# ---------------------------------------------------------------- SVM confidence attacks


def test_mia_efficacy_extremes_and_reference_loop():
    rng = np.random.default_rng(1)
    shadow_train, shadow_test = member_conf(rng, 300), nonmember_conf(rng, 300)
    assert mia_efficacy(shadow_train, shadow_test, nonmember_conf(rng, 200)) > 0.95
    assert mia_efficacy(shadow_train, shadow_test, member_conf(rng, 200)) < 0.05

    target = rng.uniform(0.0, 1.0, 200)
    clf = SVC(C=3, gamma="auto", kernel="rbf")
    clf.fit(np.r_[shadow_train, shadow_test].reshape(-1, 1), np.r_[np.ones(300), np.zeros(300)])
    nonmembers = sum(clf.predict([[c]])[0] == 0 for c in target)
    assert mia_efficacy(shadow_train, shadow_test, target) == pytest.approx(nonmembers / len(target))


def test_mia_efficacy_sets_are_the_first_n_test():
    np.testing.assert_array_equal(mia_efficacy_sets(45000, 9000), np.arange(9000))
    with pytest.raises(ValueError, match="n_retain"):
        mia_efficacy_sets(10, 20)


def test_kodge_svm_mia_direction():
    rng = np.random.default_rng(2)
    retain, forgotten = member_conf(rng, 300), nonmember_conf(rng, 300)
    # Retrain-like: forget-class test samples look like the forgotten training samples -> ~1.
    assert kodge_svm_mia(retain, forgotten, nonmember_conf(rng, 100)) > 0.95
    # Original-like: they are confident like retained members -> ~0.
    assert kodge_svm_mia(retain, forgotten, member_conf(rng, 100)) < 0.05


# ---------------------------------------------------------------- MIA-NN


def class_logits(rng, y, forget_class, neighbour, forget_signal):
    """Logits with z_y raised by 4; forget-class samples raise z_neighbour by ``forget_signal``."""
    z = rng.normal(size=(len(y), 5))
    keep = y != forget_class
    z[np.flatnonzero(keep), y[keep]] += 4.0
    z[~keep, neighbour] += forget_signal
    return z


def test_mia_nn_finds_the_neighbour_and_scores_models():
    rng = np.random.default_rng(3)
    y = np.repeat(np.arange(5), 60)
    refs = [class_logits(rng, y, 0, 3, 4.0) for _ in range(3)]
    like_retrain = class_logits(rng, y, 0, 3, 4.0)
    uninformative = class_logits(rng, y, 0, 3, 0.0)  # forget samples' z_3 looks like any other class
    half = class_logits(rng, y, 0, 3, 4.0)
    half[(y == 0) & (np.arange(len(y)) % 2 == 0), 3] -= 4.0

    res = mia_nn(np.stack(refs), y, 0, like_retrain)
    assert res.nearest_class == 3
    assert set(res.class_scores) == {1, 2, 3, 4} and res.reference_scores.shape == (3, 4)
    assert res.retrain_score > 0.9 and res.retrain_score_loo > 0.9
    assert max(v for c, v in res.class_scores.items() if c != 3) < 0.1
    assert res.unlearned_score == pytest.approx(res.retrain_score, abs=0.1) and res.gap < 0.1
    assert mia_nn(refs, y, 0, uninformative).unlearned_score < 0.1
    assert mia_nn_class_score(half, y, 0, 3) == pytest.approx(0.5, abs=0.1)
    assert mia_nn(refs[:1], y, 0).retrain_score_loo is None


def test_mia_nn_prob_feature_agrees():
    rng = np.random.default_rng(4)
    y = np.repeat(np.arange(5), 40)
    refs = [class_logits(rng, y, 0, 2, 4.0) for _ in range(2)]
    assert mia_nn(refs, y, 0, feature="prob").nearest_class == 2


# ---------------------------------------------------------------- LiRA


def test_lira_memorised_example_scores_high_and_identical_populations_zero():
    rng = np.random.default_rng(5)
    n = 50
    s_in = rng.normal(5.0, 0.5, size=(8, n))
    s_out = rng.normal(0.0, 0.5, size=(8, n))
    assert (lira_scores(np.full(n, 5.0), s_in, s_out) > 10).all()
    assert (lira_scores(np.zeros(n), s_in, s_out) < -10).all()
    np.testing.assert_array_equal(lira_scores(rng.normal(size=n), s_out, s_out), 0.0)
    assert (lira_scores(np.full(n, 5.0), s_in, s_out, fix_variance=True) > 10).all()


def test_lira_keep_mask_matches_per_example_reference():
    rng = np.random.default_rng(6)
    stats = rng.normal(size=(16, 20))
    keep = rng.random((16, 20)) < 0.5
    keep[:2], keep[2:4] = True, False  # at least 2 of each per example
    target = rng.normal(size=20)
    got = lira_scores(target, np.where(keep, stats, np.nan), np.where(~keep, stats, np.nan))
    for j in range(20):
        a, b = stats[keep[:, j], j], stats[~keep[:, j], j]
        want = norm.logpdf(target[j], np.median(a), np.std(a) + 1e-30) - norm.logpdf(
            target[j], np.median(b), np.std(b) + 1e-30)
        assert got[j] == pytest.approx(want, rel=1e-12)


def test_balanced_accuracy_half_for_identical_populations():
    rng = np.random.default_rng(7)
    mu = rng.normal(size=2000)
    s_in, s_out = mu + rng.normal(size=(8, 2000)), mu + rng.normal(size=(8, 2000))
    members, nonmembers = mu + rng.normal(size=2000), mu + rng.normal(size=2000)
    scores = np.r_[lira_scores(members, s_in, s_out), lira_scores(nonmembers, s_in, s_out)]
    bal, _ = eer_balanced_accuracy(np.r_[np.ones(2000), np.zeros(2000)], scores)
    assert bal == pytest.approx(0.5, abs=0.03)


# ---------------------------------------------------------------- U-LiRA


def shadows(rng, mu, shift, k=5):
    return mu + shift + rng.normal(scale=0.5, size=(k, len(mu)))


def test_ulira_identical_populations_is_chance():
    rng = np.random.default_rng(8)
    mu = rng.normal(size=1500)
    res = ulira(shadows(rng, mu, 0.0), shadows(rng, mu, 0.0))
    assert res.balanced_accuracy == pytest.approx(0.5, abs=0.03)
    assert res.auc == pytest.approx(0.5, abs=0.03)
    assert len(res.fold_auc) == 5 and res.target_unlearned_rate is None


def test_ulira_separated_populations_and_the_model_under_test_is_scored():
    rng = np.random.default_rng(9)
    mu = rng.normal(size=500)
    u, r = shadows(rng, mu, 3.0, k=8), shadows(rng, mu, 0.0, k=6)
    res = ulira(u, r, mu + rng.normal(scale=0.5, size=500))  # target behaves like Retrain
    assert res.balanced_accuracy > 0.98 and res.auc > 0.99
    assert len(res.fold_balanced_accuracy) == 8
    assert res.target_unlearned_rate < 0.05
    assert ulira(u, r, mu + 3.0, folds="last").target_unlearned_rate > 0.95
    assert (ulira_scores(mu + 3.0, u, r) > 0).all()


def test_ulira_few_shadows_need_fixed_variance():
    """TRW's 3 + 3 shadows leave 2 per population in each fold: per-example sigma is noise."""
    rng = np.random.default_rng(10)
    mu = rng.normal(size=500)
    u, r = shadows(rng, mu, 3.0, k=3), shadows(rng, mu, 0.0, k=3)
    assert ulira(u, r, fix_variance=True).balanced_accuracy > 0.98
    assert ulira(u, r).balanced_accuracy < 0.95


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize("call, message", [
    (lambda: mia_efficacy([], [0.1, 0.2], [0.3]), "conf_shadow_train is empty"),
    (lambda: mia_efficacy([0.9], [0.1], [[0.3]]), "conf_target must have 1"),
    (lambda: kodge_svm_mia([0.9], [np.nan], [0.1]), "conf_forget_train contains non-finite"),
    (lambda: logit_confidence(np.zeros((3, 4)), np.array([0, 1])), "y must be 1-D with 3"),
    (lambda: logit_confidence(np.zeros((2, 4)), np.array([0, 4])), "outside"),
    (lambda: lira_scores(np.zeros(3), np.zeros((4, 2)), np.zeros((4, 3))), "in_stats has 2 examples"),
    (lambda: lira_scores(np.zeros(2), np.full((4, 2), np.nan), np.zeros((4, 2))), "in_stats: every example"),
    (lambda: ulira(np.zeros((3, 5)), np.zeros((3, 4))), "retrained_stats has 4"),
    (lambda: ulira(np.zeros((2, 5)), np.zeros((3, 5))), "unlearned_stats has 2 shadow"),
    (lambda: ulira(np.zeros((3, 5)), np.zeros((3, 5)), np.zeros(4)), "target_stats has 4"),
    (lambda: mia_nn([], np.array([0]), 0), "reference_logits is empty"),
    (lambda: mia_nn_class_score(np.zeros((4, 3)), np.array([0, 0, 1, 1]), 0, 1), "no samples of the other"),
    (lambda: mia_nn([np.zeros((4, 3))], np.array([0, 1, 2, 2]), 0, np.zeros((3, 3))), "unlearned_logits shape"),
])
def test_bad_input_raises_named_value_error(call, message):
    with pytest.raises(ValueError, match=message):
        call()
