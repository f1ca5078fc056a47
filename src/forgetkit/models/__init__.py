"""Classifiers used by the benchmark; all take [0, 1] inputs and return logits.

``build_model(name, in_shape, num_classes, **kw)`` is the one constructor; architectures with a
convolutional stem use the CIFAR variant (3×3 first conv, no max-pool) as in the SalUn/FaLW code.
"""
from __future__ import annotations

import math
import numbers

import numpy as np
import torch
from torch import nn

from ..registry import Registry

MODELS: Registry = Registry("model")


@MODELS.register("logreg")
def logistic_regression(in_shape, num_classes, bias: bool = False):
    """Multinomial logistic regression (no intercept by default, as in the soft-weighting code)."""
    return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(in_shape), num_classes, bias=bias))


@MODELS.register("mlp")
def mlp(in_shape, num_classes, hidden: int = 256, depth: int = 2):
    """ReLU MLP; its last ``nn.Linear`` is the "last layer" that some unlearners touch alone.

    ``hidden``: units per hidden layer; ``depth``: number of hidden layers (0 = a linear model).
    """
    _at_least("mlp", hidden=(hidden, 1), depth=(depth, 0))
    layers: list[nn.Module] = [nn.Flatten()]
    width = math.prod(in_shape)
    for _ in range(depth):
        layers += [nn.Linear(width, hidden), nn.ReLU()]
        width = hidden
    layers.append(nn.Linear(width, num_classes))
    return nn.Sequential(*layers)


@MODELS.register("cnn")
def small_cnn(in_shape, num_classes, width: int = 32):
    """Two conv blocks and a linear head: the CPU-sized image model (about 0.1M parameters).

    ``width``: channels of the first conv block (the second has twice as many).
    """
    _at_least("cnn", width=(width, 1))
    c, h, w = _image_shape("cnn", in_shape, 4)  # two 2×2 max-pools
    return nn.Sequential(
        nn.Conv2d(c, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(width, 2 * width, 3, padding=1), nn.BatchNorm2d(2 * width), nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(2 * width * (h // 4) * (w // 4), 128), nn.ReLU(),
        nn.Linear(128, num_classes),
    )


class _BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + self.shortcut(x))


class ResNet18(nn.Module):
    """ResNet-18 with the CIFAR stem (3×3 conv, stride 1, no max-pool)."""

    def __init__(self, in_channels: int, num_classes: int, width: int = 64):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, width, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        layers, cin = [], width
        for i, cout in enumerate([width, 2 * width, 4 * width, 8 * width]):
            stride = 1 if i == 0 else 2
            layers.append(nn.Sequential(_BasicBlock(cin, cout, stride), _BasicBlock(cout, cout, 1)))
            cin = cout
        self.layer1, self.layer2, self.layer3, self.layer4 = layers
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x):
        x = torch.relu(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.pool(x), 1))


@MODELS.register("resnet18")
def resnet18(in_shape, num_classes, width: int = 64):
    """ResNet-18 (CIFAR stem); ``width``: channels of the first stage (64 in the reference)."""
    _at_least("resnet18", width=(width, 1))
    return ResNet18(_image_shape("resnet18", in_shape, 1)[0], num_classes, width)


_VGG16 = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]


@MODELS.register("vgg16_bn")
def vgg16_bn(in_shape, num_classes):
    """VGG-16 with batch norm and the CIFAR head (one linear layer on the 512-d feature)."""
    layers: list[nn.Module] = []
    cin, size, _ = _image_shape("vgg16_bn", in_shape, 1)
    for v in _VGG16:
        if v == "M":
            if size >= 2:
                layers.append(nn.MaxPool2d(2))
                size //= 2
        else:
            layers += [nn.Conv2d(cin, v, 3, padding=1), nn.BatchNorm2d(v), nn.ReLU(inplace=True)]
            cin = v
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(512, num_classes)]
    return nn.Sequential(*layers)


def _image_shape(model: str, in_shape: tuple, min_size: int) -> tuple[int, int, int]:
    """(C, H, W) of a convolutional model's input, or an error naming ``in_shape``."""
    if len(in_shape) != 3 or min(in_shape[1:]) < min_size:
        raise ValueError(f"{model} needs in_shape (channels, height, width) with height and width >= {min_size}, "
                         f"got in_shape {tuple(in_shape)}; use mlp or logreg for tabular rows")
    return in_shape


def _at_least(model: str, **options: tuple[int, int]) -> None:
    """A size option below its minimum builds a broken or empty network: refuse it by name."""
    for name, (value, low) in options.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"model.options.{name}: {model} needs an integer >= {low}, got {value!r}")


def build_model(name: str, in_shape, num_classes: int, **kwargs) -> nn.Module:
    """Construct a registered architecture for inputs of ``in_shape`` (without batch dim);
    an option the architecture does not have is an error listing the ones it has."""
    from ..options import validate_options

    builder = MODELS.get(name)
    validate_options(builder, kwargs, f"model {name!r} options")
    in_shape = tuple(int(d) if isinstance(d, numbers.Integral) else d for d in in_shape)
    if not in_shape or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 1 for d in in_shape):
        raise ValueError(f"model {name!r}: in_shape must be positive integer sizes, got {in_shape}")
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"model {name!r}: num_classes must be an integer >= 1, got {num_classes!r}")
    return builder(in_shape, num_classes, **kwargs)


def last_linear(model: nn.Module) -> nn.Linear:
    """The final classification layer (the "NN last layer" of the soft-weighting paper)."""
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError("model has no nn.Linear layer")
    return linears[-1]


def penultimate_features(model: nn.Module, x: torch.Tensor, device=None, batch_size: int = 1024) -> np.ndarray:
    """The input of ``model``'s last linear layer for every row of ``x`` (what a feature-clustering
    request shape groups), computed in batches without gradients; the model is left as it was."""
    device = torch.device(device or "cpu")
    feats: list[torch.Tensor] = []
    handle = last_linear(model).register_forward_hook(lambda _m, inp, _o: feats.append(inp[0].flatten(1).cpu()))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for chunk in torch.as_tensor(x).split(batch_size):
                model(chunk.to(device))
    finally:
        handle.remove()
        model.train(was_training)
    return torch.cat(feats).double().numpy()
