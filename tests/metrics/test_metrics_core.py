import numpy as np
import pytest
import torch
from torch import nn

from forgetkit.data.base import Split
from forgetkit.metrics.core import (accuracy, avg_gap, evaluate_model, group_accuracy, true_class_probs,
                                    unlearning_deviation)


def test_accuracy_and_true_class_probs_against_loops():
    g = torch.Generator().manual_seed(0)
    logits, y = torch.randn(50, 4, generator=g), torch.randint(0, 4, (50,), generator=g)
    assert accuracy(logits, y) == pytest.approx(100 * sum(int(logits[i].argmax() == y[i]) for i in range(50)) / 50)
    probs = true_class_probs(logits, y)
    for i in range(50):
        e = np.exp(logits[i].double().numpy())
        assert probs[i] == pytest.approx(e[y[i]] / e.sum(), rel=1e-5)


def test_avg_gap_and_deviation():
    assert avg_gap({"FA": 10, "RA": 90, "TA": 80, "MIA": 50}, {"FA": 20, "RA": 90, "TA": 84, "MIA": 46}) == 4.5
    d = unlearning_deviation([0.9, 0.5, 0.1, 0.52], [0.5, 0.5, 0.5, 0.5], tau=0.05)
    assert d == {"under": 25.0, "faithful": 50.0, "over": 25.0}
    with pytest.raises(ValueError, match="shape"):
        unlearning_deviation([0.1], [0.1, 0.2])


def test_group_accuracy():
    out = group_accuracy([1, 0, 1, 1], [0, 0, 1, 2], {"head": [0], "tail": [1, 2], "none": [5]})
    assert out["head"] == 50 and out["tail"] == 100 and np.isnan(out["none"])


def test_evaluate_model_on_a_perfect_and_a_constant_model():
    x = torch.eye(4).repeat(25, 1)
    y = torch.arange(4).repeat(25)
    perfect = nn.Linear(4, 4, bias=False)
    perfect.weight.data = 10 * torch.eye(4)
    s = Split(x, y)
    ev = evaluate_model(perfect, s.subset(range(20)), s.subset(range(20, 80)), s.subset(range(80, 100)), torch.device("cpu"))
    assert ev["FA"] == ev["RA"] == ev["TA"] == 100.0
    assert 0 <= ev["MIA"] <= 100
