"""One fixed batch and tiny model, built identically in every process of the gather test."""

from __future__ import annotations

from pathlib import Path

import torch

from bundle.openclip_import import import_open_clip
from training.config import TrainConfig
from training.model.towers import TowerSpec, build_towers
from training.model.vfe_tps import VFETPS

BATCH = 8
CAPTIONS = [
    "a man in a red jacket",
    "a man wearing red",
    "a woman with a white bag",
    "a woman in black trousers",
    "a child in a yellow coat",
    "yellow coat, blue shoes",
    "a man with glasses and a grey shirt",
    "grey shirt and jeans",
]


def build_case() -> tuple[VFETPS, TrainConfig, torch.Tensor, torch.Tensor, torch.Tensor, tuple]:
    torch.manual_seed(0)
    cfg = TrainConfig(
        root=Path("."),
        model="tiny",
        losses=["cmpm", "isgvfc"],
        batch_size=BATCH,
        instances_per_id=2,
        gvfc_images=6,
    )
    clip, _ = build_towers(TowerSpec("tiny"))
    core = VFETPS(clip, use_mim=False)
    images = torch.randn(BATCH, 3, 192, 64)
    open_clip = import_open_clip()
    tokens = open_clip.tokenizer.SimpleTokenizer(context_length=clip.context_length)(CAPTIONS)
    # Persons straddle the two shares (rows 3 and 4 both person 1), so the local-only loss differs.
    pids = torch.tensor([0, 0, 1, 1, 1, 2, 3, 3])
    stats = (
        torch.tensor(open_clip.OPENAI_DATASET_MEAN).view(1, 3, 1, 1),
        torch.tensor(open_clip.OPENAI_DATASET_STD).view(1, 3, 1, 1),
    )
    return core, cfg, images, tokens, pids, stats
