"""Per-sample scores: the log-odds of the true class, computed batch by batch, and their compact
encoding in a run's store.

The per-sample score is the log-odds of the true class, log p_y − log(1 − p_y), computed from the
logits in float64 (it does not saturate at p_y = 1 the way float32 probabilities do). Only two
numbers per sample are kept (the score and whether the prediction is right), so the audit never
holds a copy of any model's full outputs.
"""
from __future__ import annotations

import base64
import binascii

import numpy as np
import torch
from scipy.special import expit
from torch import nn

from ..data.base import Split, as_float

SCORE_NAME = "log-odds of the true class"
SCORE_KEYS = ("forget", "forget_correct", "forget_y", "heldout", "heldout_correct", "heldout_y")
"""the per-sample arrays of one model that the audit's statistics need"""


@torch.no_grad()
def model_scores(model: nn.Module, split: Split, device: torch.device, num_classes: int | None,
                 batch_size: int = 1024, name: str = "model") -> tuple[np.ndarray, np.ndarray, int]:
    """(log-odds of the true class, correct?, output width) per sample, one batch of logits at a time.

    Float32 forward pass (no autocast): bf16 logits would tie many scores.
    """
    was_training = model.training
    model.eval()
    phi, correct = [], []
    width = num_classes
    try:
        for xb, yb in zip(split.x.split(batch_size), split.y.split(batch_size)):
            z = model(as_float(xb.to(device))).detach()
            if z.dim() != 2:
                raise ValueError(f"{name} must return a 2-D batch of logits, got shape {tuple(z.shape)}")
            if width is None:
                width = z.shape[1]
            if z.shape[1] != width:
                raise ValueError(f"{name} returns {z.shape[1]} outputs per sample but num_classes is {width}; "
                                 "pass the num_classes the model was built with")
            if int(yb.max()) >= width:
                raise ValueError(f"labels go up to {int(yb.max())} but {name} has only {width} outputs")
            z = z.double().cpu()
            yb = yb.cpu().view(-1, 1)
            own = z.gather(1, yb).squeeze(1)
            others = torch.logsumexp(z.scatter(1, yb, float("-inf")), 1)
            phi.append((own - others).numpy())
            correct.append((z.argmax(1) == yb.squeeze(1)).numpy())
    finally:
        model.train(was_training)
    return np.concatenate(phi), np.concatenate(correct), int(width)


def prob(phi: np.ndarray) -> np.ndarray:
    return expit(phi)  # p_y = sigmoid(log-odds), without overflow for very negative scores


def loss(phi: np.ndarray) -> np.ndarray:
    return np.logaddexp(0.0, -phi)  # −log p_y = softplus(−φ)



def score_arrays(d: dict, name: str) -> dict:
    missing = [k for k in SCORE_KEYS if k not in d]
    if missing:
        raise ValueError(f"{name} scores lack {missing}; they need {list(SCORE_KEYS)}")
    out = {k: np.asarray(d[k]).ravel() for k in SCORE_KEYS}
    out["forget"], out["heldout"] = out["forget"].astype(np.float64), out["heldout"].astype(np.float64)
    for k in ("forget_correct", "heldout_correct"):
        out[k] = out[k].astype(bool)
    for k in ("forget_y", "heldout_y"):
        out[k] = out[k].astype(np.int64)
    for part in ("forget", "heldout"):
        n = {len(out[k]) for k in SCORE_KEYS if k.startswith(part)}
        if len(n) != 1:
            raise ValueError(f"{name} {part} arrays differ in length: {sorted(n)}")
        if not np.isfinite(out[part]).all():
            raise ValueError(f"{name} {part} scores contain NaN or inf")
    return out




# --------------------------------------------------------------------------------------------
# per-sample scores in a run's store (compact: float32 scores, int16 labels, packed bits, base64)

ENCODING = "base64 little-endian: forget/heldout float32, *_y int16, *_correct numpy.packbits"


def encode_scores(scores: dict) -> dict:
    """JSON-ready compact form of one model's :data:`SCORE_KEYS` arrays (about 5.5 bytes a sample)."""
    d = score_arrays(scores, "scores")
    if max(int(d["forget_y"].max(initial=0)), int(d["heldout_y"].max(initial=0))) > np.iinfo(np.int16).max:
        raise ValueError("labels above 32767 cannot be stored as int16")
    b64 = lambda a: base64.b64encode(a.tobytes()).decode("ascii")  # noqa: E731
    out = {"encoding": ENCODING, "n_forget": len(d["forget_y"]), "n_heldout": len(d["heldout_y"])}
    for part in ("forget", "heldout"):
        out[part] = b64(d[part].astype("<f4"))
        out[f"{part}_y"] = b64(d[f"{part}_y"].astype("<i2"))
        out[f"{part}_correct"] = b64(np.packbits(d[f"{part}_correct"]))
    return out


def decode_scores(stored: dict) -> dict:
    """The arrays :func:`encode_scores` stored; a foreign or damaged entry is a ValueError."""
    if not isinstance(stored, dict) or stored.get("encoding") != ENCODING:
        raise ValueError("stored audit scores are not in the expected encoding "
                         f"({ENCODING!r}); re-run the rows with this version of forgetkit")
    try:
        out = {}
        for part in ("forget", "heldout"):
            n = int(stored[f"n_{part}"])
            raw = lambda k: base64.b64decode(stored[k], validate=True)  # noqa: E731
            out[part] = np.frombuffer(raw(part), "<f4").astype(np.float64)
            out[f"{part}_y"] = np.frombuffer(raw(f"{part}_y"), "<i2").astype(np.int64)
            out[f"{part}_correct"] = np.unpackbits(np.frombuffer(raw(f"{part}_correct"), np.uint8), count=n).astype(bool)
    except (KeyError, ValueError, TypeError, binascii.Error) as e:
        raise ValueError(f"stored audit scores are damaged ({type(e).__name__}: {e})") from None
    return score_arrays(out, "stored")
