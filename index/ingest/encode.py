"""Encode gallery images with a bundle's image tower, in batches, with decode workers.

Each file is read once: its bytes are hashed (for dedupe) and decoded from memory. A file that
cannot be read or decoded is skipped and reported, never fatal: one bad JPEG must not stop the
indexing of a camera's day.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from bundle.encoders import Bundle
from bundle.images import ImageDecodeError, decode_bytes

log = logging.getLogger(__name__)

# (position in the input, preprocessed image or None, sha256 or None, failure reason or None)
_Sample = tuple[int, torch.Tensor | None, str | None, str | None]


@dataclass(frozen=True)
class EncodeResult:
    vectors: np.ndarray  # (len(kept), dim) float32, L2-normalised (parts: as the store holds)
    kept: list[int]  # positions in the input of the encoded files, ascending
    sha256: list[str]  # per kept file: sha256 of its bytes
    failures: list[tuple[str, str]]  # (path, reason) per skipped file


class _ImageFiles(Dataset):
    def __init__(self, paths: Sequence[Path], preprocess: Callable) -> None:
        self.paths = list(paths)
        self.preprocess = preprocess

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, n: int) -> _Sample:
        try:
            data = Path(self.paths[n]).read_bytes()
            digest = hashlib.sha256(data).hexdigest()
            # The decoder uploads use too, so a file indexed here and uploaded gets one vector.
            tensor = self.preprocess(decode_bytes(data, str(self.paths[n])).image)
        except ImageDecodeError as err:
            return n, None, None, err.message
        except Exception as err:  # PIL raises many types for bad files; all mean "skip it"
            return n, None, None, _reason(err)
        return n, tensor, digest, None


def _reason(err: Exception) -> str:
    if isinstance(err, OSError) and err.strerror:
        return f"{type(err).__name__}: {err.strerror}"
    return f"{type(err).__name__}: {err}"


def _collate(
    batch: list[_Sample],
) -> tuple[list[int], torch.Tensor | None, list[str], list[tuple[int, str]]]:
    good = [(n, t, d) for n, t, d, _ in batch if t is not None]
    bad = [(n, r) for n, t, _, r in batch if t is None]
    tensor = torch.stack([t for _, t, _ in good]) if good else None
    return [n for n, _, _ in good], tensor, [d for _, _, d in good], bad  # type: ignore[misc]


def encode_images(
    bundle: Bundle,
    paths: Sequence[Path],
    batch_size: int = 64,
    workers: int = 2,
    progress: bool = True,
) -> EncodeResult:
    """Encode ``paths`` on ``bundle.device`` (choose it with ``Bundle(path, device)``)."""
    if batch_size < 1:
        raise ValueError(f"batch size must be at least 1, got {batch_size}")
    if workers < 0:
        raise ValueError(f"workers must be 0 or more, got {workers}")
    paths = [Path(p) for p in paths]
    loader = DataLoader(
        _ImageFiles(paths, bundle.preprocess),
        batch_size=batch_size,
        shuffle=False,
        num_workers=workers,
        collate_fn=_collate,
        pin_memory=bundle.device.type == "cuda",
    )
    vectors: list[np.ndarray] = []
    kept: list[int] = []
    digests: list[str] = []
    failures: list[tuple[str, str]] = []
    with tqdm(total=len(paths), unit="img", desc="encoding", disable=not progress) as bar:
        for positions, tensor, batch_digests, bad in loader:
            if tensor is not None:
                vectors.append(bundle.encode_images(tensor))
                kept.extend(positions)
                digests.extend(batch_digests)
            for n, reason in bad:
                failures.append((str(paths[n]), reason))
                log.warning("skipped %s: %s", paths[n], reason)
            bar.update(len(positions) + len(bad))
    matrix = np.concatenate(vectors) if vectors else np.zeros((0, bundle.dim), np.float32)
    if bundle.parts is not None:
        # Parts mode: G/√(1+M+K), unit rows like every store holds (bundle/parts_layout.py).
        matrix = bundle.parts.layout.to_store(matrix)
    return EncodeResult(matrix.astype(np.float32, copy=False), kept, digests, failures)
