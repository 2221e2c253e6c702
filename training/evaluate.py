"""Text→image evaluation: encode a split's captions and images, rank, report R1/R5/R10/mAP/mINP."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from bundle.images import ImageDecodeError, decode_file
from training.data.records import Record
from training.metrics import retrieval_metrics

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
    gallery = torch.nn.functional.normalize(torch.cat(feats), dim=-1)
    queries = []
    for start in tqdm(
        range(0, len(split.captions), batch_size),
        desc="encode captions",
        disable=not progress,
        leave=False,
    ):
        chunk = split.captions[start : start + batch_size]
        queries.append(torch.as_tensor(encode_texts(chunk)).float().cpu())
    query = torch.nn.functional.normalize(torch.cat(queries), dim=-1)
    metrics = retrieval_metrics(
        query @ gallery.T,
        torch.tensor(split.caption_pids),
        torch.tensor([split.image_pids[i] for i in kept]),
    )
    metrics["gallery_images"] = len(kept)
    metrics["skipped_images"] = len(split.image_paths) - len(kept)
    return metrics
