"""Atomic training checkpoints (``torch.save`` to memory, then temp file + ``os.replace``)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from invnet.training.bundle import atomic_write_bytes

CHECKPOINT_NAME = "last.pt"


def checkpoint_path(out: str | Path) -> Path:
    return Path(out) / "checkpoints" / CHECKPOINT_NAME


def save_checkpoint(out: str | Path, payload: dict[str, Any]) -> Path:
    """Write ``payload`` (tensors, arrays, plain objects) to ``<out>/checkpoints/last.pt`` atomically."""
    import torch

    buf = io.BytesIO()
    torch.save(payload, buf)
    path = checkpoint_path(out)
    atomic_write_bytes(path, buf.getvalue())
    return path


def load_checkpoint(out: str | Path) -> dict[str, Any]:
    """The last checkpoint of a run folder; FileNotFoundError naming the folder if there is none."""
    import torch

    path = checkpoint_path(out)
    if not path.exists():
        raise FileNotFoundError(f"--resume: no checkpoint at {path}")
    return torch.load(path, map_location="cpu", weights_only=False)
