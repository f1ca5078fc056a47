"""Parameter masks: SalUn's top-fraction mask selects exactly ⌊ratio·N⌋ coordinates by rank."""
import math

import pytest
import torch
from torch import nn

from forgetkit.unlearn.masks import random_layers_mask, top_fraction_mask


def reference_mask(scores: dict, ratio: float) -> dict:
    """Slow obvious reference: rank every coordinate (ties by parameter order, then position)."""
    flat = [(float(v), i) for i, v in enumerate(torch.cat([s.flatten() for s in scores.values()]).tolist())]
    chosen = {i for _, i in sorted(flat, key=lambda t: (-t[0], t[1]))[:int(len(flat) * ratio)]}
    out, start = {}, 0
    for n, s in scores.items():
        out[n] = torch.tensor([start + j in chosen for j in range(s.numel())]).view(s.shape)
        start += s.numel()
    return out


def test_ties_at_the_cut_do_not_select_everything():
    # 30 % zero saliency (always-black pixels, dead ReLUs): the 0.9 cut falls among the zeros
    g = torch.Generator().manual_seed(0)
    w = torch.rand(70, generator=g) + 0.1
    scores = {"a.weight": torch.cat([w[:40], torch.zeros(20)]).view(6, 10), "a.bias": torch.cat([w[40:], torch.zeros(10)])}
    n = 100
    for ratio in (0.9, 0.75, 0.5, 0.29, 0.1):
        mask = top_fraction_mask(scores, ratio)
        assert sum(int(m.sum()) for m in mask.values()) == int(n * ratio), ratio  # floor, as the reference's int()
        ref = reference_mask(scores, ratio)
        assert all(torch.equal(mask[k], ref[k]) for k in scores), ratio


def test_selected_scores_dominate_the_unselected():
    g = torch.Generator().manual_seed(1)
    scores = {"x": torch.randint(0, 3, (50,), generator=g).float(), "y": torch.randint(0, 3, (7, 3), generator=g).float()}
    mask = top_fraction_mask(scores, 0.37)
    sel = torch.cat([scores[k][mask[k]] for k in scores])
    rest = torch.cat([scores[k][~mask[k]] for k in scores])
    assert len(sel) == math.floor(0.37 * 71) and sel.min() >= rest.max()


def test_ratio_one_keeps_all_and_bad_ratio_is_refused():
    scores = {"w": torch.zeros(5)}
    assert top_fraction_mask(scores, 1.0)["w"].all()
    for bad in (0.0, -0.1, 1.5):
        with pytest.raises(ValueError, match="mask fraction"):
            top_fraction_mask(scores, bad)


def test_random_layers_mask_frees_whole_layers():
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    mask = random_layers_mask(model, 1, torch.Generator().manual_seed(0))
    free = {n.split(".")[0] for n, m in mask.items() if m.all()}
    assert len(free) == 1 and all(m.all() or not m.any() for m in mask.values())
    with pytest.raises(ValueError, match="cannot choose 3 layers"):
        random_layers_mask(model, 3, torch.Generator())
