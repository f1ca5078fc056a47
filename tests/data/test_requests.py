import numpy as np
import pytest

from forgetkit.data import class_request, heldout_split, longtail_request, random_request, validate_indices
from forgetkit.data.requests import class_groups, longtail_counts


def slow_waterfill(sizes, total, prio):
    """Obvious reference: hand out one sample at a time to the class furthest below its share."""
    counts = np.zeros(len(sizes), int)
    for _ in range(total):
        free = counts < sizes
        share = prio * free / (prio * free).sum()
        target = share * (total - counts[~free].sum())
        deficit = np.where(free, target - counts, -np.inf)
        counts[np.argmax(deficit)] += 1
    return counts


@pytest.mark.parametrize("gamma", [0, 0.25, 0.5, 1, 1.5, 2])
def test_longtail_counts_match_slow_waterfilling(gamma):
    sizes = np.array([50, 40, 60, 30, 50, 45, 55, 35, 50, 40])
    total = int(round(0.3 * sizes.sum()))
    order = np.arange(10)
    counts = longtail_counts(sizes, 0.3, gamma, order)
    assert counts.sum() == total
    assert (counts <= sizes).all()
    assert np.abs(counts - slow_waterfill(sizes, total, np.arange(1, 11) ** -float(gamma))).max() <= 1
    if gamma > 0:  # non-increasing along the rank order, except where capped by size
        share = counts / sizes
        assert all(counts[i] >= counts[i + 1] or share[i] == 1 for i in range(9))


def test_longtail_matches_spec_table_of_removed_classes():
    # spec seed-methods.md §3.5: CIFAR-100 30% with 500 per class
    sizes = np.full(100, 500)
    removed = {g: int((longtail_counts(sizes, 0.3, g, np.arange(100)) == 500).sum()) for g in (0, 0.5, 1, 1.5, 2)}
    assert removed == {0: 0, 0.5: 2, 1: 8, 1.5: 13, 2: 16}


def test_longtail_request_is_seeded_and_labelled():
    y = np.repeat(np.arange(10), 100)
    a = longtail_request(y, 10, 0.2, 1.0, seed=3)
    b = longtail_request(y, 10, 0.2, 1.0, seed=3)
    c = longtail_request(y, 10, 0.2, 1.0, seed=4)
    assert np.array_equal(a.indices, b.indices) and not np.array_equal(a.indices, c.indices)
    assert len(a.indices) == 200 and len(np.unique(a.indices)) == 200


@pytest.mark.parametrize("kwargs, msg", [
    (dict(ratio=1.5, gamma=1), "ratio"), (dict(ratio=0.2, gamma=-1), "gamma"), (dict(ratio=0.0001, gamma=1), "no sample"),
])
def test_longtail_infeasible(kwargs, msg):
    with pytest.raises(ValueError, match=msg):
        longtail_request(np.repeat(np.arange(10), 10), 10, seed=0, **kwargs)


def test_keep_one_never_removes_a_class():
    counts = longtail_counts(np.full(10, 20), 0.5, 2, np.arange(10), keep_one=True)
    assert counts.max() <= 19 and counts.sum() == 100


def test_random_and_class_requests():
    y = np.repeat(np.arange(5), 20)
    r = random_request(y, 0.1, seed=0)
    assert len(r.indices) == 10 and r.kind == "random"
    c = class_request(y, [1, 3], 5)
    assert set(y[c.indices]) == {1, 3} and len(c.indices) == 40 and c.classes == (1, 3)
    with pytest.raises(ValueError, match="does not exist"):
        class_request(y, [7], 5)
    with pytest.raises(ValueError, match="every class"):
        class_request(y, range(5), 5)
    with pytest.raises(ValueError, match="fraction"):
        random_request(y, 1.2, 0)


@pytest.mark.parametrize("idx, msg", [([], "empty"), ([0, 0], "duplicates"), ([5, 100], "out of range"),
                                      ([-1], "out of range"), (list(range(10)), "whole training set"),
                                      ([0.5], "integers")])
def test_validate_indices(idx, msg):
    with pytest.raises(ValueError, match=msg):
        validate_indices(np.array(idx), 10)


def test_heldout_split_is_stratified_disjoint_and_seeded():
    y = np.repeat(np.arange(4), 50)
    keep, held = heldout_split(y, 0.1, seed=1)
    assert len(np.intersect1d(keep, held)) == 0 and len(keep) + len(held) == 200
    assert np.bincount(y[held]).tolist() == [5, 5, 5, 5]
    assert np.array_equal(held, heldout_split(y, 0.1, seed=1)[1])


def test_class_groups_thirds_and_oltr():
    labels = np.repeat(np.arange(6), [300, 150, 60, 30, 15, 5])
    g = class_groups(labels, 6)
    assert g["head"] == [0] and 5 in g["tail"]
    o = class_groups(labels, 6, "oltr")
    assert o == {"head": [0, 1], "mid": [2, 3], "tail": [4, 5]}
