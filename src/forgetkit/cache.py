"""The content-addressed checkpoint cache: a model is trained once and reused across runs."""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import torch
from torch import nn


class ModelCache:
    """Checkpoints on disk keyed by a content hash; atomic writes, safe loads."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    def path(self, key: str) -> Path:
        return self.root / f"{key}.pt"

    def load(self, key: str, model: nn.Module) -> dict | None:
        """Load weights into ``model`` and return the checkpoint's metadata, or None if not cached.

        A checkpoint of another architecture is an error naming the file.
        """
        p = self.path(key)
        if not p.exists():
            return None
        state = torch.load(p, map_location="cpu", weights_only=True)
        try:
            model.load_state_dict(state)
        except RuntimeError as e:
            raise ValueError(f"checkpoint {p} does not fit this architecture: {str(e).splitlines()[0]}") from None
        meta = p.with_suffix(".json")
        return json.loads(meta.read_text()) if meta.exists() else {}

    def save(self, key: str, model: nn.Module, meta: dict | None = None) -> None:
        """Write metadata then weights, each atomically; the weights file marks completion."""
        self.root.mkdir(parents=True, exist_ok=True)
        _atomic_write(self.path(key).with_suffix(".json"), lambda f: f.write(json.dumps(meta or {}).encode()))
        state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
        _atomic_write(self.path(key), lambda f: torch.save(state, f))


def _atomic_write(path: Path, write) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
