"""Checkpoints written atomically: a crash mid-save leaves the previous file intact."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import torch

from bundle.fsio import replace_atomic


def save_checkpoint(state: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    replace_atomic(path, lambda tmp: torch.save(state, tmp))


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Tensors and plain Python values only: a checkpoint is never allowed to run code on load."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ValueError(
            f"{path} is not a training checkpoint of this project (it holds objects other "
            f"than tensors and plain values, which are not unpickled): {first}"
        ) from err
    except (RuntimeError, EOFError) as err:
        raise ValueError(f"{path} is truncated or not a checkpoint: {err}") from err
