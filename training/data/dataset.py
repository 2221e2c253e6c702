"""Torch datasets over records: training pairs, and the gallery/query sides of evaluation.

A file that fails to decode yields ``image=None`` instead of raising, so one bad JPEG among
tens of thousands does not end an epoch; :func:`collate_pairs` drops such samples and reports
how many it dropped. Each dataset (each DataLoader worker holds its own copy) remembers the
undecodable paths and warns once per file.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import Dataset

from bundle.images import ImageDecodeError, decode_file
from training.data.records import Record

log = logging.getLogger(__name__)

ImageTransform = Callable[[Image.Image], Tensor]
Sample = dict[str, Any]


def to_tensor(image: Image.Image) -> Tensor:
    """RGB image → float tensor (3, H, W) in [0, 1], for callers that pass no transform."""
    array = np.asarray(image, dtype=np.uint8).copy()
    return torch.from_numpy(array).permute(2, 0, 1).float().div_(255.0)


class ImageReader:
    """Decodes images, turning failures into ``None`` and remembering which files failed."""

    def __init__(self, transform: ImageTransform | None = None) -> None:
        self.transform = transform or to_tensor
        self._failed: dict[str, str] = {}

    @property
    def undecodable(self) -> Mapping[str, str]:
        """Path → error for every file that failed in this process."""
        return MappingProxyType(self._failed)

    def __call__(self, path: Path) -> Tensor | None:
        try:
            image = decode_file(path)  # the decoder every path uses: EXIF, 16-bit, alpha, size
        except (ImageDecodeError, OSError) as err:
            key = str(path)
            if key not in self._failed:
                self._failed[key] = f"{type(err).__name__}: {err}"
                log.warning("skipping undecodable image %s (%s)", key, self._failed[key])
            return None
        return self.transform(image)


class CaptionPairs(Dataset):
    """One sample per (image, caption): the unit of a training batch.

    ``label`` is the person remapped to 0..N-1 (sorted raw ids, so the mapping is stable for the
    same annotation file); ``person_id`` stays the raw id. ``labels`` and ``image_ids`` list the
    values of every sample, for identity-aware batch samplers.
    """

    def __init__(self, records: Sequence[Record], transform: ImageTransform | None = None) -> None:
        self.records = tuple(records)
        # A plain dict (not a proxy) so the dataset pickles into spawned DataLoader workers.
        raw_ids = sorted({r.person_id for r in self.records})
        self.label_of: dict[int, int] = {pid: i for i, pid in enumerate(raw_ids)}
        self._pairs = [
            (ri, ci) for ri, r in enumerate(self.records) for ci in range(len(r.captions))
        ]
        self.labels = [self.label_of[self.records[ri].person_id] for ri, _ in self._pairs]
        self.image_ids = [self.records[ri].image_id for ri, _ in self._pairs]
        self._reader = ImageReader(transform)

    @property
    def num_classes(self) -> int:
        return len(self.label_of)

    @property
    def undecodable(self) -> Mapping[str, str]:
        return self._reader.undecodable

    def __len__(self) -> int:
        return len(self._pairs)

    def __getitem__(self, index: int) -> Sample:
        ri, ci = self._pairs[index]
        record = self.records[ri]
        return {
            "image": self._reader(record.image_path),
            "caption": record.captions[ci],
            "label": self.labels[index],
            "person_id": record.person_id,
            "image_id": record.image_id,
            "index": index,
        }


class GalleryImages(Dataset):
    """Every distinct image of a split once (the retrieval gallery)."""

    def __init__(self, records: Sequence[Record], transform: ImageTransform | None = None) -> None:
        unique: dict[str, Record] = {}
        for record in records:
            unique.setdefault(record.image_id, record)
        self.records = tuple(unique.values())
        self.image_ids = [r.image_id for r in self.records]
        self.person_ids = [r.person_id for r in self.records]
        self._reader = ImageReader(transform)

    @property
    def undecodable(self) -> Mapping[str, str]:
        return self._reader.undecodable

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> Sample:
        record = self.records[index]
        return {
            "image": self._reader(record.image_path),
            "image_id": record.image_id,
            "person_id": record.person_id,
            "index": index,
        }


class Queries(Dataset):
    """Every caption of a split (the retrieval queries), with the person it describes."""

    def __init__(self, records: Sequence[Record]) -> None:
        rows = [(c, r.person_id, r.image_id) for r in records for c in r.captions]
        self.captions = [c for c, _, _ in rows]
        self.person_ids = [p for _, p, _ in rows]
        self.image_ids = [i for _, _, i in rows]

    def __len__(self) -> int:
        return len(self.captions)

    def __getitem__(self, index: int) -> Sample:
        return {
            "caption": self.captions[index],
            "person_id": self.person_ids[index],
            "image_id": self.image_ids[index],
            "index": index,
        }


def collate_pairs(batch: Sequence[Sample]) -> dict[str, Any]:
    """Stack a list of samples, dropping those whose image failed to decode.

    Keys stay those of the samples: ``image`` becomes a (B, 3, H, W) tensor, integer fields
    long tensors, strings lists. ``skipped`` counts the dropped samples and
    ``skipped_image_ids`` names them. If every image failed, B is 0 and ``image`` is an empty
    tensor: callers skip such a batch.
    """
    kept = [s for s in batch if s.get("image", 0) is not None]
    out: dict[str, Any] = {
        "skipped": len(batch) - len(kept),
        "skipped_image_ids": [s.get("image_id") for s in batch if s.get("image", 0) is None],
    }
    keys = batch[0].keys() if batch else ()
    for key in keys:
        values = [s[key] for s in kept]
        if key == "image":
            out[key] = torch.stack(values) if values else torch.empty(0)
        elif isinstance(batch[0][key], int):
            out[key] = torch.tensor(values, dtype=torch.long)
        else:
            out[key] = values
    return out
