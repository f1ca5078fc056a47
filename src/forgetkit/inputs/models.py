"""Models as a user has them: where they live, what they return, and a user's input normalisation
wrapped around them the same way wherever forgetkit runs a model (``unlearn``, ``evaluate``, ``audit``)."""
from __future__ import annotations

import warnings
from typing import Callable

import numpy as np
import torch
from torch import nn

from ..data.base import as_float

DEVICE_TYPES = ("cpu", "cuda", "mps")
"""devices a model can be unlearned on"""
PROBE = 2
"""samples the model is first run on: one row of logits each, and not probabilities"""


class ForgetkitWarning(UserWarning):
    """A result that is probably not what the caller meant, though nothing is wrong enough to refuse."""


class ProbabilitiesWarning(ForgetkitWarning):
    """The model's outputs look like probabilities; forgetkit treats them as logits."""


class UnchangedModelWarning(ForgetkitWarning):
    """Unlearning left the model (or its metrics) as it was."""


def model_device(model: nn.Module) -> torch.device:
    """Where the model's first parameter (or buffer) lives; CPU for a model without any."""
    for t in (*model.parameters(), *model.buffers()):
        return t.device
    return torch.device("cpu")


def resolve_device(device, model: nn.Module | None = None, name: str = "device") -> torch.device:
    """None: where ``model`` lives; "auto": CUDA when available, else CPU; else a torch device that exists here."""
    if device is None:
        return model_device(model) if model is not None else torch.device("cpu")
    if isinstance(device, str) and device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise ValueError(f"{name} {device!r} is not a device; use 'cpu', 'cuda', 'cuda:0' or 'auto'") from None
    if dev.type not in DEVICE_TYPES:
        raise ValueError(f"{name} {device!r}: forgetkit runs models on {', '.join(DEVICE_TYPES)}; use 'cpu' or 'auto'")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"{name}: {device} was asked for but no CUDA GPU is available; use 'cpu' or 'auto'")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ValueError(f"{name} {device!r}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"{name}: {device} was asked for but MPS is not available here; use 'cpu' or 'auto'")
    return dev


def check_trainable(model: nn.Module, name: str = "model") -> None:
    """Unlearning moves parameters: a model without any that require gradients is refused."""
    params = list(model.parameters())
    if not any(p.requires_grad for p in params):
        why = "has no parameters" if not params else f"has {len(params)} parameter tensors, all frozen (requires_grad=False)"
        raise ValueError(f"{name} {why}, so unlearning could not change it; unfreeze the layers to unlearn "
                         "(p.requires_grad_(True)) or pass the trainable model")


def moved(before: nn.Module, after: nn.Module) -> bool:
    """Whether any parameter or buffer of ``after`` differs from ``before`` by more than float noise."""
    a, b = after.state_dict(), before.state_dict()
    if a.keys() != b.keys():
        return True
    for k, t in a.items():
        t0 = b[k]
        if t.shape != t0.shape:
            return True
        t, t0 = t.detach(), t0.detach().to(t.device)  # compared where the result lives, one tensor at a time
        if t.is_floating_point() and t.dtype != t0.dtype or t.dtype in (torch.float16, torch.bfloat16):
            t, t0 = t.float(), t0.float()
        same = torch.allclose(t, t0, rtol=1e-6, atol=1e-9) if t.is_floating_point() else torch.equal(t, t0)
        if not same:
            return True
    return False


class KeepModes:
    """Restore every submodule's train/eval flag on exit (evaluation must not change the user's model)."""

    def __init__(self, *models: nn.Module):
        self.saved = [(m, m.training) for model in models for m in model.modules()]

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        for m, mode in self.saved:
            m.training = mode
        return False


@torch.no_grad()
def output_size(model: nn.Module, x: torch.Tensor, name: str = "model") -> int:
    """Number of logits ``model`` gives per sample; refuses anything but a finite real N×K tensor and
    warns (:class:`ProbabilitiesWarning`) when its rows look like probabilities rather than logits."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"{name} must be a torch.nn.Module, got {type(model).__name__}")
    probe = x[:PROBE]
    with KeepModes(model):
        model.eval()
        try:
            out = model(as_float(probe.to(model_device(model))))
        except Exception as e:  # noqa: BLE001  the user's forward: report it with the input shape
            dtypes = sorted({str(p.dtype) for p in model.parameters() if p.is_floating_point()} - {"torch.float32"})
            hint = f"; forgetkit feeds float32 inputs, and the model holds {dtypes}: pass model.float()" if dtypes else ""
            raise ValueError(f"{name} fails on samples of shape {tuple(x.shape[1:])}: "
                             f"{type(e).__name__}: {e}{hint}") from e
    if not isinstance(out, torch.Tensor):
        raise TypeError(f"{name} returned a {type(out).__name__}, not a tensor of logits; forgetkit needs "
                        "forward(x) -> logits of shape (N, classes): wrap the model so forward returns "
                        "only the logits (e.g. model(x)[0])")
    n = len(probe)
    if out.dim() != 2 or out.shape[0] != n:
        raise ValueError(f"{name} returned shape {tuple(out.shape)} for {n} sample(s); forgetkit needs one row of "
                         "logits per sample, shape (N, classes)")
    if not out.is_floating_point():
        raise ValueError(f"{name} returned {out.dtype} outputs; forgetkit needs float logits (not predicted labels)")
    if not torch.isfinite(out).all():
        raise ValueError(f"{name} returned NaN or inf logits on samples of the data; check the model's "
                         "weights and that it expects these inputs")
    rows = out.float()
    if out.shape[1] > 1 and (rows >= 0).all() and ((rows.sum(1) - 1).abs() < 1e-4).all():
        warnings.warn(f"{name}'s outputs look like probabilities (non-negative, each row sums to 1); forgetkit "
                      "treats outputs as logits, so losses and metrics would be wrong: remove the final "
                      "softmax (return logits)", ProbabilitiesWarning, stacklevel=3)
    return int(out.shape[1])


# a user's input normalisation

class Normalised(nn.Module):
    """``model`` run on ``transform(x)``: inputs stay as the data holds them (uint8 or [0, 1] images),
    and the model sees them normalised as it was trained to. ``model`` is a submodule, so copies,
    devices and parameters follow it."""

    def __init__(self, model: nn.Module, transform: Callable[[torch.Tensor], torch.Tensor]):
        super().__init__()
        self.model, self.transform = model, transform

    def forward(self, x):
        return self.model(self.transform(x))


class MeanStd:
    """``(x - mean) / std`` with one value per channel (dim 1), or one for all."""

    def __init__(self, mean, std):
        self.mean, self.std = torch.as_tensor(mean, dtype=torch.float32), torch.as_tensor(std, dtype=torch.float32)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        shape = (1, -1, *[1] * (x.dim() - 2))
        return (x - self.mean.to(x.device).view(shape)) / self.std.to(x.device).view(shape)

    def __repr__(self) -> str:
        return f"MeanStd(mean={self.mean.tolist()}, std={self.std.tolist()})"


def normalisation(normalize, sample_shape: tuple | None = None, name: str = "normalize"):
    """None, or the callable that ``normalize`` (``(mean, std)`` or a function of a batch) stands for.

    ``(mean, std)``: numbers, or one value per channel (the input's dimension 1); each std > 0.
    """
    if normalize is None or callable(normalize):
        return normalize
    if isinstance(normalize, dict) and set(normalize) == {"mean", "std"}:
        normalize = (normalize["mean"], normalize["std"])
    if not isinstance(normalize, (tuple, list)) or len(normalize) != 2:
        raise TypeError(f"{name} must be (mean, std) or a function of a batch of inputs, got {normalize!r}")
    try:
        mean, std = (torch.as_tensor(np.asarray(v, dtype=np.float64)).float().flatten() for v in normalize)
    except (TypeError, ValueError):
        raise TypeError(f"{name}: mean and std must be numbers or lists of numbers, got {normalize!r}") from None
    if not (torch.isfinite(mean).all() and torch.isfinite(std).all()) or not len(mean) or not len(std):
        raise ValueError(f"{name}: mean and std must be finite numbers, got {normalize!r}")
    if (std <= 0).any():
        raise ValueError(f"{name}: every std must be > 0, got {std.tolist()}")
    channels = sample_shape[0] if sample_shape else None
    for what, v in (("mean", mean), ("std", std)):
        if len(v) != 1 and channels is not None and len(v) != channels:
            raise ValueError(f"{name}: {what} has {len(v)} values but the inputs have {channels} channels "
                             f"(shape {tuple(sample_shape)}); give one value per channel, or one for all")
    return MeanStd(mean, std)


def normalised(model: nn.Module, transform) -> nn.Module:
    """``model`` itself without a normalisation (or when it is no module, to be refused as it is), else
    :class:`Normalised` (``transform`` from :func:`normalisation`)."""
    return model if transform is None or not isinstance(model, nn.Module) else Normalised(model, transform)


def unwrapped(model: nn.Module) -> nn.Module:
    """The user's model inside a :class:`Normalised` one (what a method returns on the wrapped model)."""
    return model.model if isinstance(model, Normalised) else model
