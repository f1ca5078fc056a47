"""Writing files so that a crash or a full disk never leaves half of one, and naming them safely.

Standard library only: every layer that writes a file (the model cache, reports, recipes, the run's
``experiment.json``) uses these two functions.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path


def atomic_write(path: str | Path, data: bytes | str) -> Path:
    """Write ``data`` to a temporary file beside ``path``, fsync it and rename it over ``path``.

    A reader sees the old file or the new one, never a mix, even after a power cut; a write error
    (a full disk) leaves the old file as it was, removes the temporary one and names ``path``.
    The file is readable by everyone (``mkstemp`` alone would make it private).
    """
    path = Path(path)
    payload = data.encode() if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f"{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except OSError as e:
        if e.filename is not None:
            raise
        raise OSError(e.errno, e.strerror, str(path)) from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def safe_name(text: str) -> str:
    """``text`` as one file or directory name: letters, digits, ``-``, ``_`` and ``.`` kept, the rest ``_``."""
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in text)
