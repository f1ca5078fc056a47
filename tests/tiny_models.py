"""Tiny models the audit and stop-rule tests fit on real data (imported by those test files)."""
import torch
from torch import nn

from forgetkit.data.base import Split, as_float
from forgetkit.models import build_model


def fit_tiny_mlp(split: Split, steps: int = 200, seed: int = 0) -> nn.Module:
    """A one-layer, 64-unit MLP fitted with full-batch Adam: enough to memorise or generalise on demand."""
    torch.manual_seed(seed)
    m = build_model("mlp", tuple(split.x.shape[1:]), 10, hidden=64, depth=1)
    opt = torch.optim.Adam(m.parameters(), 3e-3)
    x = as_float(split.x)
    for _ in range(steps):
        opt.zero_grad()
        nn.functional.cross_entropy(m(x), split.y).backward()
        opt.step()
    return m.eval()
