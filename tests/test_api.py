import numpy as np
import pytest
import torch

from forgetkit import unlearn
from forgetkit.data import load_dataset
from forgetkit.models import build_model
from forgetkit.train import TrainRecipe, train_classifier


@pytest.fixture(scope="module")
def digits_models():
    b = load_dataset("digits")
    train = b.train
    forget = np.flatnonzero(train.y.numpy() == 3)
    retain = np.setdiff1d(np.arange(len(train)), forget)
    recipe = TrainRecipe(epochs=8, lr=0.1, batch_size=64)

    def fit(split):
        torch.manual_seed(0)
        m = build_model("mlp", (1, 8, 8), 10, hidden=32, depth=1)
        return train_classifier(m, split, recipe, 0, torch.device("cpu"), 10).eval()

    return b, forget, fit(train), fit(train.subset(retain))


def test_unlearn_api_returns_a_copy_and_metrics(digits_models):
    b, forget, original, retrained = digits_models
    before = {k: v.clone() for k, v in original.state_dict().items()}
    res = unlearn(original, (b.train.x, b.train.y), forget, method="rl", heldout=(b.test.x, b.test.y),
                  weighting="falw", reference=retrained, test=(b.test.x, b.test.y), epochs=3, lr=0.05)
    assert all(torch.equal(before[k], v) for k, v in original.state_dict().items())
    assert res.model is not original
    m = res.metrics
    assert set(m) >= {"FA", "RA", "TA", "MIA", "AvgGap", "retrain_FA"}
    assert m["retrain_FA"] < 20 and m["FA"] < 60  # class 3 is being forgotten
    assert m["RA"] > 50
    assert m["AvgGap"] == pytest.approx(np.mean([abs(m[k] - m[f"retrain_{k}"]) for k in ("FA", "RA", "TA", "MIA")]))


def test_unlearn_api_rejects_bad_input(digits_models):
    b, forget, original, _ = digits_models
    data = (b.train.x, b.train.y)
    with pytest.raises(ValueError, match="duplicates"):
        unlearn(original, data, [1, 1], method="ga")
    with pytest.raises(ValueError, match="needs a heldout set"):
        unlearn(original, data, forget, method="rl", weighting="falw")
    with pytest.raises(ValueError, match=r"method 'ga' options: unknown option\(s\) \['learning_rate'\]"):
        unlearn(original, data, forget, method="ga", learning_rate=0.1)
    with pytest.raises(KeyError, match="unknown method"):
        unlearn(original, data, forget, method="nope")
    with pytest.raises(ValueError, match="test set"):
        unlearn(original, data, forget, method="ga", reference=original)
