"""The "NN last layer" model: a frozen MLP feature extractor under a logistic head.

As in the reference ``model.py`` of ``XinbaoQiao/Soft-Weighted-Machine-Unlearning``
(``MLPClassifier``, ``NNLastLayerIF.fit_feature_extractor``): two ReLU layers of width = input
dimension, trained on a small seeded fraction of the training data with full-batch Adam and early
stopping on the training loss; the head, the part that is unlearned, is an L2 logistic regression
without bias fitted on the embeddings of the remaining points.
"""
from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from torch import nn

from ..models import build_model, last_linear


def reference_mlp(width: int) -> nn.Module:
    """The reference ``MLPClassifier``: Linear(d, d)+ReLU twice, then a bias-free Linear(d, 1)."""
    return nn.Sequential(nn.Linear(width, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(),
                         nn.Linear(width, 1, bias=False))


def train_feature_extractor(x, y, seed: int, lr: float = 1e-2, max_iter: int = 2000,
                            patience: int = 10, min_delta: float = 1e-5,
                            architecture: Literal["forgetkit", "reference"] = "forgetkit") -> nn.Module:
    """MLP (hidden = input dim, depth 2, one logit) fitted with BCE.

    Stops when the training loss has not improved by ``min_delta`` for ``patience`` iterations
    (the reference: ``min_delta`` 0, at most 15,000 iterations). ``architecture="reference"`` builds
    :func:`reference_mlp` and draws its initial weights the way the reference does after seeding:
    ``NNLastLayerIF`` builds the network in its constructor and again in ``fit_feature_extractor``,
    so the trained weights start from the second draw of ``torch.manual_seed(seed)``.
    """
    torch.manual_seed(seed)
    x, y = torch.as_tensor(x, dtype=torch.float32), torch.as_tensor(y, dtype=torch.float32)
    if architecture == "reference":
        reference_mlp(x.shape[1])
        model = reference_mlp(x.shape[1])
    else:
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
