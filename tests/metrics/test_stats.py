"""forgetkit.stats against slow, obvious computations and constructed cases with known answers."""
import math

import numpy as np
import pytest
from scipy import stats as st

from forgetkit import stats


def slow_auc(pos, neg):
    total = 0.0
    for p in pos:
        for n in neg:
            total += 1.0 if p > n else 0.5 if p == n else 0.0
    return total / (len(pos) * len(neg))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_auc_matches_all_pairs_with_ties(seed):
    rng = np.random.default_rng(seed)
    pos, neg = rng.integers(0, 6, 37).astype(float), rng.integers(0, 6, 23).astype(float) - 0.5 * seed
    assert stats.auc(pos, neg) == pytest.approx(slow_auc(pos, neg), abs=1e-12)


def test_auc_known_values():
    assert stats.auc([3, 4], [1, 2]) == 1.0
    assert stats.auc([1, 2], [3, 4]) == 0.0
    assert stats.auc([1, 1], [1]) == 0.5


def test_bootstrap_matches_loop_of_resamples():
    rng = np.random.default_rng(5)
    pos, neg = np.round(rng.normal(0.3, 1, 40), 1), np.round(rng.normal(0, 1, 25), 1)
    n_boot = stats.BOOT_CHUNK + 7  # a full chunk and a partial one
    fast = stats.bootstrap_auc(pos, neg, n_boot=n_boot, seed=11)
    r = np.random.default_rng(11)
    slow = []
    for start in range(0, n_boot, stats.BOOT_CHUNK):
        m = min(stats.BOOT_CHUNK, n_boot - start)
        ip, ineg = r.integers(0, len(pos), (m, len(pos))), r.integers(0, len(neg), (m, len(neg)))
        for row in range(m):
            slow.append(slow_auc(pos[ip[row]], neg[ineg[row]]))
    np.testing.assert_allclose(fast, slow, atol=1e-12)


def test_percentile_ci_and_coverage_of_known_auc():
    # two normals one unit apart: AUC = Phi(1/sqrt(2)); the 95% interval should cover it
    true = st.norm.cdf(1 / math.sqrt(2))
    covered = 0
    for s in range(20):
        rng = np.random.default_rng(100 + s)
        reps = stats.bootstrap_auc(rng.normal(1, 1, 300), rng.normal(0, 1, 300), n_boot=300, seed=s)
        lo, hi = stats.percentile_ci(reps, 0.95)
        covered += lo <= true <= hi
        assert lo == pytest.approx(np.quantile(reps, 0.025)) and hi == pytest.approx(np.quantile(reps, 0.975))
    assert covered >= 17


def test_null_variance_matches_permutations():
    rng = np.random.default_rng(3)
    pos, neg = rng.integers(0, 4, 15).astype(float), rng.integers(0, 4, 10).astype(float)
    pooled = np.concatenate([pos, neg])
    perm = []
    for _ in range(20000):
        x = rng.permutation(pooled)
        perm.append(stats.auc(x[:15], x[15:]))
    assert stats.null_auc_variance(pos, neg) == pytest.approx(np.var(perm), rel=0.05)


def test_stratified_test_with_one_stratum_is_scipy_mann_whitney():
    rng = np.random.default_rng(4)
    pos, neg = np.round(rng.normal(0.4, 1, 60), 1), np.round(rng.normal(0, 1, 80), 1)
    est, p = stats.stratified_auc_test([stats.auc(pos, neg)], [stats.null_auc_variance(pos, neg)], [1])
    ref = st.mannwhitneyu(pos, neg, method="asymptotic", use_continuity=False).pvalue
    assert est == pytest.approx(stats.auc(pos, neg)) and p == pytest.approx(ref, rel=1e-9)


def test_stratified_test_is_calibrated_under_the_null():
    rng = np.random.default_rng(6)
    rejections = 0
    for _ in range(400):
        aucs, vs, ws = [], [], []
        for c, (nf, nh) in enumerate([(50, 20), (5, 30), (12, 12)]):
            pos, neg = rng.normal(c, 1, nf), rng.normal(c, 1, nh)
            aucs.append(stats.auc(pos, neg))
            vs.append(stats.null_auc_variance(pos, neg))
            ws.append(nf)
        rejections += stats.stratified_auc_test(aucs, vs, ws)[1] < 0.05
    assert 0.02 <= rejections / 400 <= 0.09


def test_holm_matches_definition():
    p = np.array([0.01, 0.04, 0.03, 0.005, 0.5])
    m = len(p)
    order = np.argsort(p)
    slow = np.empty(m)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        slow[i] = running
    np.testing.assert_allclose(stats.holm(p), slow)


def test_tpr_at_fpr_matches_brute_force():
    rng = np.random.default_rng(7)
    pos, neg = np.round(rng.normal(1, 1, 200), 1), np.round(rng.normal(0, 1, 1000), 1)
    for fpr in (0.01, 0.001, 0.1):
        best = 0.0
        for t in np.concatenate([np.unique(np.concatenate([pos, neg])), [-np.inf]]):
            if (neg > t).mean() <= fpr:
                best = max(best, (pos > t).mean())
        assert stats.tpr_at_fpr(pos, neg, fpr) == pytest.approx(best)
    assert stats.tpr_at_fpr(pos, neg[:50], 0.01) is None  # 50 negatives cannot measure 1 %


def test_likelihood_ratio_formula():
    s = np.array([-1.0, 0.0, 2.5])
    got = stats.likelihood_ratio(s, 0.0, 1.0, 2.0, 0.5)
    pdf = lambda x, m, sd: math.exp(-0.5 * ((x - m) / sd) ** 2) / (sd * math.sqrt(2 * math.pi))  # noqa: E731
    np.testing.assert_allclose(got, [math.log(pdf(x, 2, 0.5)) - math.log(pdf(x, 0, 1)) for x in s])
    one_sided = stats.likelihood_ratio(s, 0.0, 1.0)
    np.testing.assert_allclose(one_sided, [-math.log(1 - 0.5 * (1 + math.erf(x / math.sqrt(2)))) for x in s])
    assert np.all(np.diff(one_sided) > 0)


def test_verdicts():
    v = lambda *a: stats.verdict(*a, margin=0.05)  # noqa: E731
    assert v(0.7, (0.65, 0.75), 1e-6) == "under-forgotten"
    assert v(0.3, (0.25, 0.35), 1e-6) == "over-forgotten"
    assert v(0.51, (0.47, 0.54), 0.4) == "faithful"
    assert v(0.53, (0.51, 0.545), 0.01) == "faithful"  # significant but too small to matter
    assert v(0.6, (0.4, 0.8), 0.2) == "inconclusive"
    assert v(0.54, (0.52, 0.56), 0.001) == "inconclusive"
    assert stats.verdict(0.53, (0.51, 0.545), 0.01) == "under-forgotten"  # default margin 0.02
    assert stats.verdict(0.51, (0.49, 0.53), 0.4) == "inconclusive"


def test_all_tied_is_no_evidence():
    c = stats.compare([2.0] * 30, [2.0] * 40, n_boot=20)
    assert c.auc == 0.5 and c.p_mann_whitney == 1.0 and c.null_variance == 0.0
    assert stats.stratified_auc_test([c.auc], [c.null_variance], [1]) == (0.5, 1.0)
    assert stats.verdict(c.auc, (c.ci_low, c.ci_high), c.p_mann_whitney) == "faithful"


def test_compare_reports_effect_and_tests():
    rng = np.random.default_rng(8)
    c = stats.compare(rng.normal(1, 1, 100), rng.normal(0, 1, 120), n_boot=200)
    assert c.ci_low < c.auc < c.ci_high and c.auc > 0.7
    assert c.cliffs_delta == pytest.approx(2 * c.auc - 1)
    assert c.p_mann_whitney < 1e-6 and c.p_ks < 1e-4 and len(c.replicates) == 200


@pytest.mark.parametrize("bad", [[], [np.nan], [[1.0, 2.0]]])
def test_bad_samples_are_value_errors(bad):
    with pytest.raises(ValueError):
        stats.auc(bad, [1.0])


def test_bad_parameters():
    with pytest.raises(ValueError, match="level"):
        stats.percentile_ci([0.5, 0.6], 1.0)
    with pytest.raises(ValueError, match="margin"):
        stats.verdict(0.5, (0.4, 0.6), 0.5, margin=0.6)
    with pytest.raises(ValueError, match="fpr"):
        stats.tpr_at_fpr([1.0], [0.0], 0.0)
    with pytest.raises(ValueError, match="weights"):
        stats.stratified_auc_test([0.5], [0.01], [-1])


def test_binomial_tail_and_upper_bound_match_slow_sums():
    n, rate = 40, 0.1
    for k in (0, 3, 4, 9, 40):
        slow = sum(math.comb(n, j) * rate ** j * (1 - rate) ** (n - j) for j in range(k, n + 1))
        assert stats.binomial_p_greater(k, n, rate) == pytest.approx(slow, rel=1e-9)
        # the upper bound u solves P(X <= k | u) = 1 - level; find it by bisection
        lo, hi = k / n, 1.0
        for _ in range(200):
            mid = (lo + hi) / 2
            cdf = sum(math.comb(n, j) * mid ** j * (1 - mid) ** (n - j) for j in range(k + 1))
            lo, hi = (mid, hi) if cdf > 0.05 else (lo, mid)
        assert stats.share_upper_bound(k, n, 0.95) == pytest.approx(1.0 if k == n else lo, abs=1e-9)


def test_removed_class_verdicts():
    assert stats.removed_class_verdict(0.3, 1e-9) == "under-forgotten"
    assert stats.removed_class_verdict(0.005, 0.9) == "faithful"
    assert stats.removed_class_verdict(0.03, 0.2) == "inconclusive"
    with pytest.raises(ValueError):
        stats.binomial_p_greater(5, 3, 0.1)
