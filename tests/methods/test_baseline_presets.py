"""The small pure pieces of the l1_sparse, SFR-on, SCRUB, BE and BS presets, against hand values."""
import pytest
import torch
from torch import nn

from forgetkit.data.base import Split
from forgetkit.methods import build_method
from forgetkit.methods.boundary_expanding import expand_head, prune_head
from forgetkit.methods.boundary_shrinking import fgsm, neighbour_labels
from forgetkit.methods.l1_sparse import EpochDecayingL1, l1_strength
from forgetkit.methods.sfron import adaptive_weights, fisher_ratio_mask
from forgetkit.unlearn.optim import cosine_decay
from forgetkit.unlearn.context import UnlearnContext
from forgetkit.unlearn.weightings import Uniform


def test_l1_strength_decays_per_epoch_like_the_reference():
    assert [l1_strength(1.0, e, 4, 0) for e in range(4)] == pytest.approx([1.0, 0.75, 0.5, 0.25])
    assert [l1_strength(1.0, e, 4, 2) for e in range(4)] == pytest.approx([1.0, 0.5, 0.0, 0.0])
    assert l1_strength(0.3, 0, 2, 2) == 0.3  # no decay window: constant (Unlearn-Sparse)
    model = nn.Linear(2, 1)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[1.0, -2.0]]))
        model.bias.fill_(3.0)
    reg = EpochDecayingL1(0.1, epochs=10)
    assert reg(model, 0.55).item() == pytest.approx(0.1 * 0.5 * 6.0)  # epoch 5 of 10, ‖θ‖₁ = 6
    assert reg(model, 0.5).item() == pytest.approx(0.1 * 0.5 * 6.0)


def test_sfron_adaptive_weights_and_mask():
    assert adaptive_weights(torch.tensor([1.0, 4.0]), 0.5).tolist() == pytest.approx([4 / 3, 2 / 3])
    mask = fisher_ratio_mask({"w": torch.tensor([1.0, 0.5, 0.0])}, {"w": torch.tensor([0.5, 1.0, 0.0])}, 1.0)
    assert mask["w"].tolist() == [True, False, True]  # 0/0 ratio is 1 thanks to the 1e-15 guards
    assert cosine_decay(25.0, 0, 100) == 25.0 and cosine_decay(25.0, 50, 100) == pytest.approx(12.5)


def test_scrub_retain_term_is_alpha_kl_plus_gamma_ce():
    m = build_method("scrub", alpha=0.25, gamma=0.5)
    parts, cfg = m.parts(None, None), m.loop()
    assert cfg.retain_weight * parts.retain.ce_weight == pytest.approx(0.5) and cfg.retain_weight == 0.25
    assert cfg.forget_epochs == 2 and cfg.mixing == "sequential" and cfg.milestones == (3, 5, 9)


def test_be_expands_then_prunes_to_the_original_rows():
    torch.manual_seed(0)
    head = nn.Linear(3, 2)
    wide = expand_head(head, torch.Generator().manual_seed(0))
    assert wide.out_features == 3 and torch.equal(wide.weight[:2], head.weight) and torch.equal(wide.bias[:2], head.bias)
    with torch.no_grad():
        wide.weight.add_(1.0)
    pruned = prune_head(wide, head)
    assert pruned is head and torch.equal(head.weight, wide.weight[:2])


def test_be_without_pruning_keeps_the_shadow_output():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 5), nn.ReLU(), nn.Linear(5, 3))
    ctx = UnlearnContext(original=model, forget=Split(torch.randn(6, 4), torch.zeros(6)), num_classes=3)
    kept, _ = build_method("be", epochs=1, prune_shadow=False).unlearn(model, ctx, Uniform())
    pruned, _ = build_method("be", epochs=1).unlearn(model, ctx, Uniform())
    assert kept(torch.randn(2, 4)).shape == (2, 4) and pruned(torch.randn(2, 4)).shape == (2, 3)


def test_bs_fgsm_step_and_neighbour_label():
    # logits = [x0, x1]: the CE gradient wrt x is (p − onehot(y)), so sign = (−1, +1) for y = 0
    model = nn.Linear(2, 2, bias=False)
    with torch.no_grad():
        model.weight.copy_(torch.eye(2))
    x, y = torch.tensor([[0.52, 0.5]]), torch.tensor([0])
    assert fgsm(model, x, y, 0.1, pixels=False)[0].tolist() == pytest.approx([0.42, 0.6])
    adv = fgsm(model, torch.tensor([[0.05, 0.97]]), y, 0.1, pixels=True)
    assert adv[0].tolist() == [0.0, 1.0]  # clamped to [0, 1]
    pix = fgsm(model, torch.tensor([[0.5, 0.5]]), y, 0.1013, pixels=True)
    assert torch.equal(pix, torch.round(pix * 255) / 255)  # on the 8-bit grid
    assert neighbour_labels(model, x, y, 0.1, pixels=False).tolist() == [1]
    assert neighbour_labels(model, x, y, 0.001, pixels=False).tolist() == [0]  # failed attack keeps y
