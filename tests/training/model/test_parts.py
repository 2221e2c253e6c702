"""The part-level head: stripes, padding, shared tokens and classifiers (docs/parts.md 1, 2, 6),
and one real ViT-B-16 step with every loss."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from bundle.openclip_import import import_open_clip
from bundle.parts_head import PartsHead, stripe_pool
from training.config import TrainConfig
from training.model.parts import PartIdentityHeads
from training.objectives import compute_losses
from training.train import build_model


def test_stripes_pool_bands_of_rows() -> None:
    rows = torch.arange(24.0).view(1, 24, 1, 1).expand(2, 24, 8, 3)
    pooled_max = stripe_pool(rows, 6, "max")[0, :, 0]
    pooled_avg = stripe_pool(rows, 6, "avg")[0, :, 0]
    assert pooled_max.tolist() == [4 * k + 3 for k in range(6)]
    assert pooled_avg.tolist() == [4 * k + 1.5 for k in range(6)]
    with pytest.raises(ValueError, match="do not divide"):
        stripe_pool(rows, 5)
    with pytest.raises(ValueError, match="must divide"):
        PartsHead(768, 512, (24, 8), stripes=5)


def test_text_after_the_end_token_changes_nothing_and_tokens_are_shared() -> None:
    torch.manual_seed(0)
    head = PartsHead(64, 32, (4, 2), width=32, embed_dim=16, coarse_tokens=2, stripes=2, heads=4)
    head.eval()
    tokens = torch.randn(1, 6, 32)
    padding = torch.tensor([[False, False, False, True, True, True]])
    edited = tokens.clone()
    edited[:, 3:] = torch.randn(1, 3, 32) * 10
    a, b = head.text(tokens, padding), head.text(edited, padding)
    assert torch.allclose(a.coarse, b.coarse, atol=1e-6) and torch.allclose(
        a.fine, b.fine, atol=1e-6
    )
    # One coarse token set serves both modalities: both send it gradient.
    image = head.image(torch.randn(2, 8, 64))
    text = head.text(torch.randn(2, 6, 32), padding.expand(2, -1))
    image.coarse.sum().backward(retain_graph=True)
    from_image = head.coarse_queries.grad.clone()
    head.coarse_queries.grad = None
    text.coarse.sum().backward()
    assert from_image.abs().sum() > 0 and head.coarse_queries.grad.abs().sum() > 0
    assert torch.allclose(image.coarse.norm(dim=-1), torch.ones(2, 2))


def test_image_and_text_share_each_slot_classifier() -> None:
    heads = PartIdentityHeads(coarse=2, fine=3, embed_dim=4, num_ids=5)
    same = torch.randn(1, 2, 4)
    fine = torch.randn(1, 3, 4)
    from bundle.parts_head import PartEmbeddings

    logits = heads(PartEmbeddings(same, fine), PartEmbeddings(same, fine), None, None)
    assert torch.equal(logits["coarse_image"], logits["coarse_text"])
    assert logits["fine_image"].shape == (1, 3, 5) and "global_image" not in logits


def test_real_vit_b16_step_with_every_loss_and_parts_on_cpu() -> None:
    torch.manual_seed(0)
    cfg = TrainConfig(
        root=Path("."),
        model="ViT-B-16",
        losses="cmpm,tgmim,isgvfc,parts",
        batch_size=2,
        instances_per_id=2,
        gvfc_images=2,
        parts_global_id=True,
    )
    core, _, _ = build_model(cfg, num_ids=3)
    open_clip = import_open_clip()
    tokens = open_clip.tokenizer.SimpleTokenizer()(["a man in red", "a woman with a bag"])
    stats = (
        torch.tensor(open_clip.OPENAI_DATASET_MEAN).view(1, 3, 1, 1),
        torch.tensor(open_clip.OPENAI_DATASET_STD).view(1, 3, 1, 1),
    )
    losses = compute_losses(
        core, core, torch.randn(2, 3, 384, 128), tokens, torch.tensor([0, 1]), cfg, stats
    )
    assert {"cmpm", "tgmim", "isgvfc", "parts_rank", "parts_id", "loss"} <= set(losses.terms)
    losses.objective.backward()
    assert core.parts.coarse_queries.grad is not None
    assert core.id_heads.global_head.weight.grad is not None
    assert all(torch.isfinite(v) for v in losses.terms.values())
