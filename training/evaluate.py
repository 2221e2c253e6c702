"""Text→image evaluation: encode a split's captions and images, rank, report R1/R5/R10/mAP/mINP."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from bundle.images import ImageDecodeError, decode_file
from training.data.records import Record
from training.metrics import retrieval_metrics

if TYPE_CHECKING:
    from bundle.encoders import Bundle

log = logging.getLogger(__name__)

ImageEncoder = Callable[[torch.Tensor], torch.Tensor]
TextEncoder = Callable[[list[str]], torch.Tensor]


@dataclass(frozen=True)
class EvalSplit:
    """A split as a retrieval problem: every caption is a query, every distinct image a target."""

    image_paths: list[str]
    image_pids: list[int]
    captions: list[str]
    caption_pids: list[int]

    @classmethod
    def from_records(cls, records: Sequence[Record]) -> EvalSplit:
        paths, pids, captions, caption_pids = [], [], [], []
        seen: set[str] = set()
        for rec in records:
            if rec.image_id not in seen:
                seen.add(rec.image_id)
                paths.append(str(rec.image_path))
                pids.append(rec.person_id)
            captions.extend(rec.captions)
            caption_pids.extend([rec.person_id] * len(rec.captions))
        return cls(paths, pids, captions, caption_pids)


class _Images(Dataset):
    def __init__(self, paths: list[str], transform: Callable[[Image.Image], torch.Tensor]) -> None:
        self.paths = paths
        self.transform = transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[torch.Tensor | None, int]:
        try:
            return self.transform(decode_file(Path(self.paths[i]))), i
        except (ImageDecodeError, OSError) as err:
            log.warning("skipping undecodable gallery image %s: %s", self.paths[i], err)
            return None, i


def _collate(batch: list[tuple[torch.Tensor | None, int]]) -> tuple[torch.Tensor | None, list[int]]:
    kept = [(x, i) for x, i in batch if x is not None]
    if not kept:
        return None, []
    return torch.stack([x for x, _ in kept]), [i for _, i in kept]


@torch.no_grad()
def encode_split(
    split: EvalSplit,
    encode_images: ImageEncoder,
    encode_texts: TextEncoder,
    transform: Callable[[Image.Image], torch.Tensor],
    batch_size: int = 64,
    workers: int = 0,
    progress: bool = True,
) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
    """(gallery rows, query rows, positions of the decodable images) as the encoders give them."""
    loader = DataLoader(
        _Images(split.image_paths, transform),
        batch_size=batch_size,
        num_workers=workers,
        collate_fn=_collate,
    )
    feats, kept = [], []
    for images, idx in tqdm(loader, desc="encode images", disable=not progress, leave=False):
        if images is not None:
            feats.append(torch.as_tensor(encode_images(images)).float().cpu())
            kept.extend(idx)
    queries = []
    for start in tqdm(
        range(0, len(split.captions), batch_size),
        desc="encode captions",
        disable=not progress,
        leave=False,
    ):
        chunk = split.captions[start : start + batch_size]
        queries.append(torch.as_tensor(encode_texts(chunk)).float().cpu())
    return torch.cat(feats), torch.cat(queries), kept


def _metrics(split: EvalSplit, scores: torch.Tensor, kept: list[int]) -> dict[str, float]:
    metrics = retrieval_metrics(
        scores,
        torch.tensor(split.caption_pids),
        torch.tensor([split.image_pids[i] for i in kept]),
    )
    metrics["gallery_images"] = len(kept)
    metrics["skipped_images"] = len(split.image_paths) - len(kept)
    return metrics


@torch.no_grad()
def evaluate_split(
    split: EvalSplit,
    encode_images: ImageEncoder,
    encode_texts: TextEncoder,
    transform: Callable[[Image.Image], torch.Tensor],
    batch_size: int = 64,
    workers: int = 0,
    progress: bool = True,
) -> dict[str, float]:
    """Metrics in percent; encoders return one row per input (normalised here anyway)."""
    gallery, query, kept = encode_split(
        split, encode_images, encode_texts, transform, batch_size, workers, progress
    )
    gallery = torch.nn.functional.normalize(gallery, dim=-1)
    query = torch.nn.functional.normalize(query, dim=-1)
    return _metrics(split, query @ gallery.T, kept)


@torch.no_grad()
def evaluate_parts(
    split: EvalSplit,
    bundle: Bundle,
    weights: dict[str, float] | None = None,
    batch_size: int = 64,
    workers: int = 0,
    progress: bool = True,
) -> dict[str, dict[str, float]]:
    """A parts-mode bundle's metrics twice from one encoding: ``global`` (the 512-d g alone, what
    a global-only index ranks by) and ``parts`` (S = ⟨G, Q⟩ with ``weights``, default the
    bundle's). Neither side is renormalised: S is the score docs/parts.md defines."""
    parts = bundle.parts
    if parts is None:
        raise ValueError("evaluate_parts needs a bundle opened with parts=True")
    gallery, blocks, kept = encode_split(
        split,
        bundle.encode_images,
        lambda texts: parts.text_blocks(bundle.tokens(texts)),
        bundle.preprocess,
        batch_size,
        workers,
        progress,
    )
    g = parts.layout.global_dim
    query = torch.from_numpy(
        parts.layout.weigh(blocks.numpy(), {**parts.weights, **(weights or {})})
    )
    return {
        "global": _metrics(split, blocks[:, :g] @ gallery[:, :g].T, kept),
        "parts": _metrics(split, query @ gallery.T, kept),
    }
