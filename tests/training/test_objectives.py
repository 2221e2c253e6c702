"""A full training step's loss terms, on the tiny model and on the real ViT-B-16 recipe."""

from __future__ import annotations

from pathlib import Path

import torch

from bundle.openclip_import import import_open_clip
from training.config import TrainConfig
from training.model.towers import TowerSpec, build_towers
from training.model.vfe_tps import VFETPS
from training.objectives import compute_losses, to_grayscale


def _norm_stats() -> tuple[torch.Tensor, torch.Tensor]:
    oc = import_open_clip()
    mean = torch.tensor(oc.OPENAI_DATASET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(oc.OPENAI_DATASET_STD).view(1, 3, 1, 1)
    return mean, std


def _step(model_name: str, size: tuple[int, int], losses: list[str], **kw) -> dict:
    torch.manual_seed(0)
    cfg = TrainConfig(
        root=Path("."),
        model=model_name,
        losses=losses,
        batch_size=2,
        instances_per_id=2,
        gvfc_images=2,
        **kw,
    )
    clip, _ = build_towers(TowerSpec(model_name))
    model = VFETPS(clip, use_mim="tgmim" in losses, mim_layers=cfg.mim_layers)
    images = torch.randn(2, 3, *size)
    tokenizer = import_open_clip().tokenizer.SimpleTokenizer(context_length=clip.context_length)
    tokens = tokenizer(["a man in red", "a man in a red top"])
    pids = torch.tensor([0, 0])
    losses = compute_losses(model, model, images, tokens, pids, cfg, _norm_stats())
    terms = losses.terms
    assert losses.objective is terms["loss"] or torch.equal(losses.objective, terms["loss"])
    terms["loss"].backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    return terms


def test_tiny_step_with_every_loss_gives_each_term() -> None:
    terms = _step("tiny", (192, 64), ["cmpm", "tgmim", "isgvfc", "triplet"], mim_layers=1)
    assert set(terms) == {"cmpm", "tgmim", "isgvfc", "triplet", "loss"}
    parts = sum(v for k, v in terms.items() if k != "loss")
    assert torch.isclose(terms["loss"], parts)


def test_grayscale_restoration_input_and_sdm() -> None:
    terms = _step("tiny", (192, 64), ["sdm", "tgmim"], mim_layers=1, mim_grayscale=True)
    assert set(terms) == {"sdm", "tgmim", "loss"}


def test_real_vit_b16_step_with_all_losses_on_cpu_at_batch_2() -> None:
    terms = _step("ViT-B-16", (384, 128), ["cmpm", "tgmim", "isgvfc"])
    assert all(torch.isfinite(v) for v in terms.values())


def test_grayscale_has_equal_channels_in_pixel_space() -> None:
    mean, std = _norm_stats()
    gray = to_grayscale(torch.randn(2, 3, 8, 4), mean, std) * std + mean
    assert torch.allclose(gray[:, 0], gray[:, 1], atol=1e-6)
    assert torch.allclose(gray[:, 1], gray[:, 2], atol=1e-6)
