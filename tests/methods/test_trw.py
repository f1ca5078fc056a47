"""TRW targets on constructed cases, and TRW / TRW-2R on a tiny digits problem."""
import numpy as np
import pytest
import torch

from forgetkit.data import class_request, load_dataset, random_request
from forgetkit.methods import build_method
from forgetkit.methods.trw import class_similarity, output_similarity, tilted_targets
from forgetkit.metrics.core import accuracy, predict_logits
from forgetkit.models import build_model
from forgetkit.train import TrainRecipe, train_classifier
from forgetkit.unlearn.context import UnlearnContext

CPU = torch.device("cpu")


def weights_with_neighbour():
    """Class 2's vector is a small perturbation of class 0's; the rest are random."""
    g = torch.Generator().manual_seed(0)
    w = torch.randn(6, 16, generator=g)
    w[2] = w[0] + 0.05 * torch.randn(16, generator=g)
    return w


def test_scores_are_a_distribution_over_retained_classes_and_favour_the_neighbour():
    s = class_similarity(weights_with_neighbour(), [0], temperature=0.1)
    assert s[0, 0] == 0
    assert s[0, 1:].sum().item() == pytest.approx(1.0, abs=1e-6)
    assert int(s[0].argmax()) == 2
    assert torch.all(s[1:] == 0)


def test_scores_reject_bad_options():
    w = weights_with_neighbour()
    with pytest.raises(ValueError, match="temperature"):
        class_similarity(w, [0], temperature=0.0)
    with pytest.raises(ValueError, match="rank"):
        class_similarity(w, [0], rank=99)
    with pytest.raises(ValueError, match="forget classes"):
        class_similarity(w, range(6))


def test_targets_sum_to_one_with_no_forget_mass():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(50, 6, generator=g) * 3
    labels = torch.tensor([0, 4] * 25)
    s = class_similarity(weights_with_neighbour(), [0, 4])
    t = tilted_targets(logits, labels, s, [0, 4], beta=10.0)
    assert torch.allclose(t.sum(1), torch.ones(50), atol=1e-6)
    assert torch.all(t[:, [0, 4]] == 0)


def test_beta_zero_is_the_renormalised_original_distribution():
    g = torch.Generator().manual_seed(2)
    logits = torch.randn(20, 6, generator=g) * 2
    labels = torch.zeros(20, dtype=torch.long)
    t = tilted_targets(logits, labels, class_similarity(weights_with_neighbour(), [0]), [0], beta=0.0)
    p = torch.softmax(logits, 1)
    expected = p[:, 1:] / (1 - p[:, :1])
    assert torch.allclose(t[:, 1:], expected, atol=1e-6)


def test_larger_beta_concentrates_on_the_most_similar_class():
    g = torch.Generator().manual_seed(3)
    logits = torch.randn(30, 6, generator=g)
    labels = torch.zeros(30, dtype=torch.long)
    s = class_similarity(weights_with_neighbour(), [0])
    mass = [tilted_targets(logits, labels, s, [0], beta=b)[:, 2].mean().item() for b in (0, 5, 10, 20)]
    assert mass == sorted(mass) and mass[-1] > 0.9 > mass[0]


def test_targets_refuse_samples_outside_the_forgotten_classes():
    s = class_similarity(weights_with_neighbour(), [0])
    with pytest.raises(ValueError, match="forgotten class"):
        tilted_targets(torch.zeros(2, 6), torch.tensor([0, 3]), s, [0])


@pytest.fixture(scope="module")
def digits_world():
    bundle = load_dataset("digits")
    pool = bundle.train
    torch.manual_seed(0)
    model = build_model("mlp", bundle.input_shape, 10, hidden=32, depth=2)
    train_classifier(model, pool, TrainRecipe(epochs=15, lr=0.05, batch_size=64), 0, CPU, 10)
    return bundle, model


def context(bundle, model, request):
    pool = bundle.train
    keep = np.setdiff1d(np.arange(len(pool)), request.indices)
    return UnlearnContext(original=model, forget=pool.subset(request.indices), retain=pool.subset(keep),
                          num_classes=10, device=CPU, seed=0, forget_classes=request.classes)


def test_trw_forgets_the_class_and_keeps_the_rest(digits_world):
    bundle, model = digits_world
    ctx = context(bundle, model, class_request(bundle.train.y.numpy(), [3], 10))
    test = bundle.test
    gone = test.y == 3
    before = predict_logits(model, test.x, CPU)
    unlearned, _ = build_method("trw", epochs=4, lr=0.01).unlearn(model, ctx)
    after = predict_logits(unlearned, test.x, CPU)
    assert accuracy(before[gone], test.y[gone]) > 80
    assert accuracy(after[gone], test.y[gone]) < 10
    assert accuracy(after[~gone], test.y[~gone]) > accuracy(before[~gone], test.y[~gone]) - 5


def test_trw_2r_moves_only_two_layers(digits_world):
    bundle, model = digits_world
    ctx = context(bundle, model, class_request(bundle.train.y.numpy(), [3, 5], 10))
    unlearned, _ = build_method("trw_2r", epochs=1, lr=0.01).unlearn(model, ctx)
    changed = {n.rsplit(".", 1)[0] for n, p in unlearned.named_parameters()
               if not torch.equal(p, dict(model.named_parameters())[n])}
    assert len(changed) == 2


def test_trw_refuses_a_random_forget_set(digits_world):
    bundle, model = digits_world
    req = random_request(bundle.train.y.numpy(), 0.1, 0)
    ctx = context(bundle, model, req)
    with pytest.raises(ValueError, match="whole classes"):
        build_method("trw").unlearn(model, ctx)


def test_trw_rejects_an_unknown_combination_mode():
    with pytest.raises(ValueError, match="combine"):
        build_method("trw", combine="average")



def test_output_similarity_is_the_mean_renormalised_original_distribution():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(12, 4, generator=g)
    labels = torch.tensor([1, 2] * 6)
    scores = output_similarity(logits, labels, [1, 2], 4)
    for f in (1, 2):  # slow reference: drop the forgotten columns, renormalise, average f's rows
        rows = [torch.softmax(logits[i, [0, 3]].double(), 0) for i in range(12) if labels[i] == f]
        expected = torch.stack(rows).mean(0)
        assert torch.allclose(scores[f, [0, 3]].double(), expected, atol=1e-6)
        assert scores[f, [1, 2]].abs().sum() == 0
    assert scores[[0, 3]].abs().sum() == 0  # retained classes' rows are never used
    with pytest.raises(ValueError, match="no forget samples"):
        output_similarity(logits, labels, [1, 3], 4)


def test_trw_outputs_similarity_runs_and_unknown_similarity_is_refused(digits_world):
    bundle, model = digits_world
    ctx = context(bundle, model, class_request(bundle.train.y.numpy(), [3], 10))
    unlearned, _ = build_method("trw", similarity="outputs", epochs=2, lr=0.01).unlearn(model, ctx)
    gone = bundle.test.y == 3
    assert accuracy(predict_logits(unlearned, bundle.test.x, CPU)[gone], bundle.test.y[gone]) < 30
    with pytest.raises(ValueError, match="similarity"):
        build_method("trw", similarity="cosine")
