"""The "NN last layer" model: a frozen MLP feature extractor under a logistic head.

As in the reference ``model.py`` (``NNLastLayerIF``): the MLP (two ReLU layers of width =
input dimension) is trained on a small seeded fraction of the training data, full-batch Adam with
early stopping on training loss; the head — the part that is unlearned — is an L2 logistic
regression without bias fitted on the embeddings of the remaining points.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..models import build_model, last_linear


def train_feature_extractor(x, y, seed: int, lr: float = 1e-2, max_iter: int = 2000,
                            patience: int = 10, min_delta: float = 1e-5) -> nn.Module:
    """MLP (hidden = input dim, depth 2, one logit) fitted with BCE; stops when the training loss
    has not improved by ``min_delta`` for ``patience`` iterations (the reference allows 15,000)."""
    torch.manual_seed(seed)
    x, y = torch.as_tensor(x, dtype=torch.float32), torch.as_tensor(y, dtype=torch.float32)
    model = build_model("mlp", (x.shape[1],), 1, hidden=x.shape[1], depth=2)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    best, stale = float("inf"), 0
    for _ in range(max_iter):
        opt.zero_grad()
        loss = nn.functional.binary_cross_entropy_with_logits(model(x)[:, 0], y)
        loss.backward()
        opt.step()
        if loss.item() < best - min_delta:
            best, stale = loss.item(), 0
        else:
            stale += 1
            if stale >= patience:
                break
    return model.eval()


def embed(model: nn.Module, x) -> np.ndarray:
    """Penultimate activations: the input of the model's last linear layer."""
    store = {}
    hook = last_linear(model).register_forward_hook(lambda m, inp, out: store.update(z=inp[0]))
    with torch.no_grad():
        model(torch.as_tensor(x, dtype=torch.float32))
    hook.remove()
    return store["z"].double().numpy()


def set_head(model: nn.Module, theta) -> nn.Module:
    """Write an (unlearned) head θ into the MLP's last layer (bias 0), for use as a torch model."""
    layer = last_linear(model)
    with torch.no_grad():
        layer.weight.copy_(torch.as_tensor(np.asarray(theta), dtype=layer.weight.dtype)[None])
        if layer.bias is not None:
            layer.bias.zero_()
    return model
