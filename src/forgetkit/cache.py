"""The content-addressed checkpoint cache: a model is trained once and reused across runs.

Each entry is ``KEY.pt`` (the weights) and ``KEY.json`` (metadata with the sha256 of the weights
file). An entry that is truncated, overwritten or unreadable is treated as missing: a warning
names the file, the model is retrained and the entry replaced atomically. Two processes that want
the same model take a per-key file lock, so one trains it and the other loads it.
"""
from __future__ import annotations

import fcntl
import hashlib
import io
import json
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

import torch
from torch import nn

from .files import atomic_write


class CorruptCheckpointWarning(UserWarning):
    """A cached checkpoint failed its content check and will be retrained."""


class ModelCache:
    """Checkpoints on disk keyed by a content hash; atomic writes, verified safe loads."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    def path(self, key: str) -> Path:
        return self.root / f"{key}.pt"

    def load(self, key: str, model: nn.Module) -> dict | None:
        """Load weights into ``model`` and return the checkpoint's metadata, or None if not cached
        or corrupted (a :class:`CorruptCheckpointWarning` names the file).

        A sound checkpoint of another architecture is an error naming the file.
        """
        p = self.path(key)
        if not p.exists():
            return None
        state, meta, problem = _read_entry(p)
        if problem is not None:
            warnings.warn(f"cached checkpoint {p} is unusable ({problem}); treating it as missing: "
                          "the model is trained again and the file replaced", CorruptCheckpointWarning,
                          stacklevel=2)
            return None
        try:
            model.load_state_dict(state)
        except RuntimeError as e:
            raise ValueError(f"checkpoint {p} does not fit this architecture: {str(e).splitlines()[0]}") from None
        return meta

    def save(self, key: str, model: nn.Module, meta: dict | None = None) -> None:
        """Write the metadata (with the weights' sha256), then the weights, each atomically; the
        weights file marks completion. A full disk is an ``OSError`` (ENOSPC) naming the file."""
        self.root.mkdir(parents=True, exist_ok=True)
        buf = io.BytesIO()
        torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, buf)
        data = buf.getvalue()
        meta = {**(meta or {}), "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
        atomic_write(self.path(key).with_suffix(".json"), json.dumps(meta).encode())
        atomic_write(self.path(key), data)

    @contextmanager
    def lock(self, key: str) -> Iterator[None]:
        """Hold an exclusive lock on ``key`` (blocking while another process holds it)."""
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / f"{key}.lock", "a") as f:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f.fileno(), fcntl.LOCK_UN)

    def get_or_train(self, key: str, build: Callable[[], nn.Module],
                     train: Callable[[nn.Module], dict]) -> tuple[nn.Module, dict, bool]:
        """(model, metadata, trained now): the cached model, or one built by ``build()``, trained in
        place by ``train(model)`` (which returns the metadata to store) and saved.

        The lock is taken only on a miss, and the cache read again under it: a second process
        asking for the same model waits for the first and loads what it wrote.
        """
        model = build()
        meta = self.load(key, model)
        if meta is not None:
            return model, meta, False
        with self.lock(key):
            model = build()
            meta = self.load(key, model)
            if meta is not None:
                return model, meta, False
            meta = train(model)
            self.save(key, model, meta)
        return model, meta, True


def _read_entry(p: Path) -> tuple[dict | None, dict, str | None]:
    """(state dict, metadata, problem): the problem in words when the entry cannot be trusted."""
    data = p.read_bytes()
    meta_path = p.with_suffix(".json")
    try:
        meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None, {}, f"its metadata {meta_path.name} is not valid JSON"
    expected = meta.get("sha256") if isinstance(meta, dict) else None
    if not isinstance(meta, dict):
        return None, {}, f"its metadata {meta_path.name} is not a JSON object"
    if expected is not None and hashlib.sha256(data).hexdigest() != expected:
        return None, meta, "its sha256 does not match the one recorded when it was written"
    try:
        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001  torch's message may advise unsafe loading: never pass it on
        return None, meta, "it is not a readable weights file"
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        return None, meta, "it does not hold a state dict of tensors"
    return state, meta, None
