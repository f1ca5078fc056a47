import numpy as np
import pytest
import torch
from torch import nn

from forgetkit.bench.store import ResultStore
from forgetkit.data.base import Split
from forgetkit.cache import ModelCache
from forgetkit.train import TrainRecipe, train_cached

RECIPE = TrainRecipe(epochs=2, lr=0.1, batch_size=16)


class Recorder(nn.Module):
    """A linear model that remembers every sample id (feature 0) it was trained on."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(3, 2)
        self.seen: set[int] = set()

    def forward(self, x):
        if self.training:
            self.seen.update(x[:, 0].round().long().tolist())
        return self.lin(x)


def _data(n=100):
    g = torch.Generator().manual_seed(0)
    x = torch.cat([torch.arange(n).float().view(-1, 1), torch.randn(n, 2, generator=g)], 1)
    return Split(x, (x[:, 1] > 0).long())


def test_retrained_reference_never_sees_a_forget_index(tmp_path):
    data = _data()
    forget = np.array([3, 17, 42, 99])
    retain = np.setdiff1d(np.arange(100), forget)
    model, _ = train_cached(ModelCache(tmp_path), Recorder, data, retain, RECIPE, 0, torch.device("cpu"), 2, {})
    assert model.seen == set(retain.tolist())
    assert not model.seen & set(forget.tolist())


def test_cache_reuses_and_keys_on_indices(tmp_path):
    cache, data, dev = ModelCache(tmp_path), _data(), torch.device("cpu")
    a, ta = train_cached(cache, Recorder, data, np.arange(50), RECIPE, 0, dev, 2, {"m": 1})
    b, tb = train_cached(cache, Recorder, data, np.arange(50), RECIPE, 0, dev, 2, {"m": 1})
    assert b.seen == set()  # loaded, not trained
    assert tb == pytest.approx(ta)
    for k, v in a.state_dict().items():
        assert torch.equal(v, b.state_dict()[k])
    c, _ = train_cached(cache, Recorder, data, np.arange(49), RECIPE, 0, dev, 2, {"m": 1})
    assert c.seen  # other indices: trained anew
    assert len(list(tmp_path.glob("*.pt"))) == 2 and not list(tmp_path.glob("*.tmp"))


def test_checkpoint_of_another_architecture_is_a_clear_error(tmp_path):
    cache = ModelCache(tmp_path)
    cache.save("k", nn.Linear(3, 2))
    with pytest.raises(ValueError, match="does not fit this architecture"):
        cache.load("k", nn.Linear(4, 2))


def test_store_roundtrip_replace_and_resume_semantics(tmp_path):
    with ResultStore(tmp_path / "r.sqlite") as s:
        common = dict(experiment="e", method="ga", weighting="uniform", request="r", seed=0, params={"lr": 1},
                      provenance={"commit": "x"})
        s.put(key="a", status="failed", metrics={}, error="NaN at step 3", **common)
        assert not s.has("a")  # failed rows are retried
        s.put(key="a", status="ok", metrics={"FA": 1.5}, artifacts={"p": [0.1]}, **common)
        assert s.has("a")
        rows = s.rows()
        assert len(rows) == 1 and rows[0]["metrics"] == {"FA": 1.5} and s.artifacts("a") == {"p": [0.1]}
        with pytest.raises(Exception):
            s.put(key="b", status="weird", metrics={}, **common)
        assert len(s.rows()) == 1
