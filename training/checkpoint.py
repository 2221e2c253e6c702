"""Checkpoints written atomically: a crash mid-save leaves the previous file intact."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from index.fsio import replace_atomic


def save_checkpoint(state: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    replace_atomic(path, lambda tmp: torch.save(state, tmp))


def load_checkpoint(path: Path) -> dict[str, Any]:
    if not Path(path).is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    # Our own files: they hold the config and RNG states next to the tensors.
    return torch.load(path, map_location="cpu", weights_only=False)
