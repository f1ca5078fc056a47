"""Class-unlearning evaluators on digits, where the right answer is known.

The original model memorised class 3; retrained models never saw it. Attacks must tell the two
apart, and must score ~50% when both populations are the same kind of model.
"""
import copy
from functools import lru_cache

import numpy as np
import pytest
import torch

from forgetkit.metrics.evaluators import EVALUATORS, CellView
from forgetkit.data import class_request, load_dataset, random_request
from forgetkit.metrics.shadows import fresh_copy, pool_of
from forgetkit.models import build_model
from forgetkit.train import TrainRecipe, train_classifier

CPU = torch.device("cpu")
RECIPE = {"epochs": 12, "lr": 0.05, "batch_size": 64}
FORGET = 3


@pytest.fixture(scope="module")
def world():
    bundle = load_dataset("digits")
    pool = bundle.train
    req = class_request(pool.y.numpy(), [FORGET], 10)
    keep = np.setdiff1d(np.arange(len(pool)), req.indices)
    forget, retain = pool.subset(req.indices), pool.subset(keep)

    @lru_cache(maxsize=None)
    def train(seed, on_retain):
        torch.manual_seed(seed)
        m = build_model("mlp", bundle.input_shape, 10, hidden=32, depth=1)
        return train_classifier(m, retain if on_retain else pool, TrainRecipe(**RECIPE), seed, CPU, 10).eval()

    def view(model, original, unlearn=None, request=req, f=forget, r=retain):
        return CellView(model=model, original=original, retrained=train(0, True), bundle=bundle, forget=f,
                        retain=r, test=bundle.test, request=request, seed=0, device=CPU,
                        references=lambda m: [train(1000 + i, True) for i in range(m)], unlearn=unlearn)

    return {"bundle": bundle, "original": train(0, False), "retrained": train(0, True), "view": view,
            "forget": forget, "retain": retain, "request": req}


def run(name, cell, **options):
    return EVALUATORS.get(name)(cell, **options)


def test_class_acc_separates_memorised_from_never_seen(world):
    orig = run("class_acc", world["view"](world["original"], world["original"]))
    ret = run("class_acc", world["view"](world["retrained"], world["original"]))
    assert orig["Acc_f"] > 85 and ret["Acc_f"] == 0
    assert abs(orig["Acc_r"] - ret["Acc_r"]) < 5


def test_kodge_mia_is_low_for_the_original_and_high_for_retrain(world):
    orig = run("kodge_mia", world["view"](world["original"], world["original"]))["MIA_kodge"]
    ret = run("kodge_mia", world["view"](world["retrained"], world["original"]))["MIA_kodge"]
    assert orig < 20 and ret > 80


def test_mia_nn_scores_a_reference_like_its_own_reference(world):
    view = world["view"]
    ref0 = view(None, None).references(3)[0]
    out = run("mia_nn", view(ref0, world["original"]), references=3)
    assert set(out) >= {"MIA_NN", "MIA_NN_retrain", "MIA_NN_gap", "MIA_NN_class"}
    assert out["MIA_NN_class"].startswith("3→")
    assert out["MIA_NN_gap"] == pytest.approx(abs(out["MIA_NN_retrain"] - out["MIA_NN"]))
    # the unlearned model is scored with its own SVM exactly as a reference is
    from forgetkit.metrics.attacks import mia_nn
    from forgetkit.metrics.core import predict_logits
    test = world["bundle"].test
    refs = [predict_logits(m, test.x, CPU).numpy() for m in view(None, None).references(3)]
    res = mia_nn(refs, test.y.numpy(), FORGET, refs[0])
    assert out["MIA_NN"] == pytest.approx(100 * res.unlearned_score)


def test_ulira_identical_populations_score_about_half_and_memorised_shadows_near_one(world):
    view = world["view"]
    same = run("ulira", view(world["retrained"], world["original"]), shadows=3, train=RECIPE)
    assert 30 <= same["ULiRA_acc"] <= 70
    # Original row: full-data shadows, not unlearned, vs retrained shadows
    leaky = run("ulira", view(world["original"], world["original"]), shadows=3, train=RECIPE)
    assert leaky["ULiRA_acc"] > 90 and leaky["ULiRA_target"] > 90


def test_ulira_scores_the_model_under_test_not_a_shadow(world):
    view = world["view"]
    unlearned = []
    out = run("ulira", view(world["retrained"], world["original"], unlearn=lambda m: unlearned.append(m) or m),
              shadows=3, train=RECIPE)
    assert len(unlearned) == 3 and world["retrained"] not in unlearned
    # shadows untouched (memorised) vs a retrained model under test: it must look "retrained"
    assert out["ULiRA_acc"] > 90 and out["ULiRA_target"] < 10


def test_forget_confusion_is_a_distribution_and_zero_distance_for_retrain(world):
    view = world["view"]
    ret = run("forget_confusion", view(world["retrained"], world["original"]))
    orig = run("forget_confusion", view(world["original"], world["original"]))
    shares = [v for k, v in ret.items() if k.startswith("conf_to_")]
    assert len(shares) == 10 and sum(shares) == pytest.approx(100)
    assert ret["conf_tv_retrain"] == 0 and ret[f"conf_to_{FORGET}"] == 0
    assert orig[f"conf_to_{FORGET}"] > 85 and orig["conf_tv_retrain"] > 85


def test_class_metrics_refuse_a_random_request(world):
    req = random_request(world["bundle"].train.y.numpy(), 0.1, 0)
    with pytest.raises(ValueError, match="class forget request"):
        run("class_acc", world["view"](world["original"], world["original"], request=req))


def test_pool_is_rebuilt_in_order_and_fresh_copies_differ(world):
    pool = pool_of(world["forget"], world["retain"], world["request"].indices)
    assert torch.equal(pool.x, world["bundle"].train.x) and torch.equal(pool.y, world["bundle"].train.y)
    torch.manual_seed(5)
    a = fresh_copy(world["original"])
    b = copy.deepcopy(world["original"])
    assert not torch.equal(a[-1].weight, b[-1].weight)
