"""ZRF, JS divergence and activation distance against slow explicit-loop references, then as evaluators."""
import math

import numpy as np
import pytest
import torch

from forgetkit.data import class_request, load_dataset
from forgetkit.metrics import output_eval as oe
from forgetkit.metrics.evaluators import EVALUATORS, CellView
from forgetkit.models import build_model
from forgetkit.train import TrainRecipe, train_classifier

CPU = torch.device("cpu")


def random_probs(n, c, seed, sharp=1.0):
    g = torch.Generator().manual_seed(seed)
    return torch.softmax(sharp * torch.randn(n, c, generator=g), 1)


def slow_kl(a, b):
    return sum(ai * math.log(ai / bi) for ai, bi in zip(a, b) if ai > 0)


def slow_js(p, q):
    """JS of every row, one Python float at a time."""
    out = []
    for pr, qr in zip(p.tolist(), q.tolist()):
        m = [(a + b) / 2 for a, b in zip(pr, qr)]
        out.append(0.5 * slow_kl(pr, m) + 0.5 * slow_kl(qr, m))
    return out


def test_js_matches_the_slow_loop_and_its_bounds():
    p, q = random_probs(7, 5, 0, 3.0), random_probs(7, 5, 1, 3.0)
    assert oe.js_divergence(p, q).tolist() == pytest.approx(slow_js(p, q), rel=1e-9, abs=1e-12)
    assert oe.js_divergence(p, p).abs().max() < 1e-12
    # disjoint one-hot rows reach the maximum ln 2; zeros are handled (0·log 0 = 0)
    a, b = torch.eye(3), torch.eye(3).roll(1, 1)
    assert oe.js_divergence(a, b).tolist() == pytest.approx([math.log(2)] * 3)


def test_zrf_paper_and_reference_code_variants_match_slow_loops():
    p, q = random_probs(6, 4, 2), random_probs(6, 4, 3)
    assert oe.zrf_score(p, q) == pytest.approx(1 - np.mean(slow_js(p, q)), rel=1e-9)
    # the reference code: ½·KL(m‖p) + ½·KL(m‖q), mean over every (sample, class) entry
    total = 0.0
    for i in range(6):
        for j in range(4):
            m = (p[i, j].item() + q[i, j].item()) / 2
            total += 0.5 * m * math.log(m / p[i, j].item()) + 0.5 * m * math.log(m / q[i, j].item())
    assert oe.zrf_score(p, q, "reference_code") == pytest.approx(1 - total / 24, rel=1e-9)
    assert oe.zrf_score(p, p) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="variant"):
        oe.zrf_score(p, q, "code")
    with pytest.raises(ValueError, match="variant"):  # refused before any training, from the config
        EVALUATORS.get("zrf").check({"variant": "code"})


def test_activation_distance_matches_the_slow_loop():
    p, q = random_probs(5, 3, 4), random_probs(5, 3, 5)
    slow = np.mean([math.sqrt(sum((a - b) ** 2 for a, b in zip(pr, qr))) for pr, qr in zip(p.tolist(), q.tolist())])
    assert oe.activation_distance(p, q) == pytest.approx(slow, rel=1e-9)
    assert oe.activation_distance(torch.eye(2), torch.eye(2).flip(0)) == pytest.approx(math.sqrt(2))


def test_shapes_are_checked():
    with pytest.raises(ValueError, match="N × C"):
        oe.js_divergence(random_probs(3, 4, 0), random_probs(3, 5, 0))
    with pytest.raises(ValueError, match="N × C"):
        oe.activation_distance(random_probs(3, 4, 0), random_probs(4, 4, 0))


@pytest.fixture(scope="module")
def cells():
    bundle = load_dataset("digits")
    pool = bundle.train
    req = class_request(pool.y.numpy(), [3], 10)
    keep = np.setdiff1d(np.arange(len(pool)), req.indices)
    forget, retain = pool.subset(req.indices), pool.subset(keep)

    def train(data, seed):
        torch.manual_seed(seed)
        m = build_model("mlp", bundle.input_shape, 10, hidden=32, depth=1)
        return train_classifier(m, data, TrainRecipe(epochs=8, lr=0.05, batch_size=64), seed, CPU, 10).eval()

    original, retrained = train(pool, 0), train(retain, 0)

    def view(model):
        return CellView(model=model, original=original, retrained=retrained, bundle=bundle, forget=forget,
                        retain=retain, test=bundle.test, request=req, seed=0, device=CPU,
                        references=lambda m: [])

    return view, original, retrained


def test_evaluators_are_registered_and_rank_models_sensibly(cells):
    view, original, retrained = cells
    assert {"zrf", "js_divergence", "activation_distance"} <= set(EVALUATORS.names())
    orig = {k: v for name in ("zrf", "js_divergence", "activation_distance")
            for k, v in EVALUATORS.get(name)(view(original)).items()}
    ret = {k: v for name in ("zrf", "js_divergence", "activation_distance")
           for k, v in EVALUATORS.get(name)(view(retrained)).items()}
    assert ret["JS_retrain"] == 0 and ret["ActDist_retrain"] == 0
    assert orig["JS_retrain"] > 0.05 and orig["ActDist_retrain"] > 0.1
    # the original is confident on class 3, further from a random model than Retrain is
    assert 0 < orig["ZRF"] < ret["ZRF"] < 1
    random_model = oe.incompetent_model(original, 0, CPU)
    assert EVALUATORS.get("zrf")(view(random_model))["ZRF"] == pytest.approx(1.0)
    assert orig["ZRF"] == EVALUATORS.get("zrf")(view(original))["ZRF"], "the random model must be seeded"
