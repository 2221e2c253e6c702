"""The VFE-TPS model: token paths agree with open_clip, and TG-MIM really uses the caption."""

from __future__ import annotations

import pytest
import torch

from bundle.openclip_import import import_open_clip
from training.losses import masked_l1_loss
from training.model.towers import TowerSpec, build_towers
from training.model.vfe_tps import VFETPS
from training.objectives import mask_images


@pytest.fixture(scope="module")
def model() -> VFETPS:
    torch.manual_seed(0)
    clip, _ = build_towers(TowerSpec("tiny"))
    return VFETPS(clip, use_mim=True, mim_layers=1).eval()


@pytest.fixture(scope="module")
def tokenizer(model: VFETPS):
    return import_open_clip().tokenizer.SimpleTokenizer(context_length=model.clip.context_length)


def test_global_features_match_open_clip(model: VFETPS, tokenizer) -> None:
    images = torch.randn(3, 3, 192, 64)
    text = tokenizer(["a man in a red shirt", "a woman with a white bag", "black trousers"])
    with torch.no_grad():
        assert torch.allclose(model.encode_image(images).features, model.clip.encode_image(images))
        assert torch.allclose(model.encode_text(text).features, model.clip.encode_text(text))


def test_image_tokens_are_cls_plus_patches_before_projection(model: VFETPS) -> None:
    out = model.encode_image(torch.randn(2, 3, 192, 64))
    grid_h, grid_w = model.grid
    assert out.tokens.shape == (2, 1 + grid_h * grid_w, model.clip.visual.transformer.width)


def test_text_padding_starts_after_end_of_text(model: VFETPS, tokenizer) -> None:
    text = tokenizer(["red", "a man in a long grey coat"])
    padding = model.encode_text(text).padding
    lengths = (~padding).sum(dim=1)
    # start + words + end: "red" is 3 tokens, the longer caption more.
    assert lengths[0].item() == 3
    assert lengths[1].item() > 3
    assert not padding[:, 0].any()


def test_reconstruction_changes_with_the_caption(model: VFETPS, tokenizer) -> None:
    images = torch.randn(2, 3, 192, 64)
    masked, _ = mask_images(images, model, 0.6, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        a = model.reconstruct(masked, model.encode_text(tokenizer(["red coat", "red coat"])))
        b = model.reconstruct(masked, model.encode_text(tokenizer(["blue skirt", "blue skirt"])))
    assert a.shape == images.shape
    assert (a - b).abs().max() > 1e-4


def test_mim_loss_sends_gradient_into_both_encoders(tokenizer) -> None:
    torch.manual_seed(1)
    clip, _ = build_towers(TowerSpec("tiny"))
    model = VFETPS(clip, use_mim=True, mim_layers=1)
    images = torch.randn(2, 3, 192, 64)
    masked, pixel_mask = mask_images(images, model, 0.6)
    text = model.encode_text(tokenizer(["a man in a red shirt", "a woman in a blue dress"]))
    loss = masked_l1_loss(model.reconstruct(masked, text), images, pixel_mask)
    loss.backward()
    image_grad = model.clip.visual.conv1.weight.grad
    text_grad = model.clip.token_embedding.weight.grad
    assert image_grad is not None and image_grad.abs().sum() > 0
    assert text_grad is not None and text_grad.abs().sum() > 0


def test_masking_zeroes_exactly_the_masked_patches(model: VFETPS) -> None:
    images = torch.randn(4, 3, 192, 64)
    masked, pixel_mask = mask_images(images, model, 0.5)
    grid_h, grid_w = model.grid
    patch = model.patch_size
    per_image = pixel_mask.flatten(1).sum(dim=1) / (patch * patch)
    assert torch.all(per_image == round(0.5 * grid_h * grid_w))
    assert torch.all(masked[pixel_mask.expand_as(masked) > 0] == 0)
    assert torch.equal(
        masked[pixel_mask.expand_as(masked) == 0], images[pixel_mask.expand_as(images) == 0]
    )


def test_reference_decoder_width_dropout_and_clip_init() -> None:
    from training.model.tgmim import TextGuidedDecoder

    torch.manual_seed(0)
    decoder = TextGuidedDecoder(
        768, 512, (24, 8), 16, heads=8, layers=4, width=512, dropout=0.0, clip_init=True
    )
    block = decoder.blocks.layers[0]
    assert block.dropout.p == 0.0 and block.self_attn.dropout == 0.0
    assert abs(block.self_attn.in_proj_weight.std().item() - 512**-0.5) < 0.002
    assert abs(block.linear1.weight.std().item() - (2 * 512) ** -0.5) < 0.002
    proj = 512**-0.5 * (2 * 4) ** -0.5
    assert abs(block.linear2.weight.std().item() - proj) < 0.002
    assert abs(decoder.cross_attn.in_proj_weight.std().item() - 512**-0.5) < 0.002
    paper = TextGuidedDecoder(768, 512, (24, 8), 16, clip_init=True)  # kdim 512 ≠ width 768
    assert abs(paper.cross_attn.k_proj_weight.std().item() - 768**-0.5) < 0.002
    out = decoder(torch.randn(2, 193, 768), torch.randn(2, 5, 512), torch.zeros(2, 5).bool())
    assert out.shape == (2, 3, 384, 128)
