"""The reference code's TG-MIM: mask token over 32-px blocks, and its decoder from visual.proj."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from bundle.openclip_import import import_open_clip
from training.losses import masked_l1_loss
from training.model.towers import TowerSpec, build_towers
from training.model.vfe_tps import VFETPS
from training.objectives import mask_patches


@pytest.fixture(scope="module")
def core() -> VFETPS:
    torch.manual_seed(0)
    clip, _ = build_towers(TowerSpec("tiny"))
    return VFETPS(clip, mim_layers=2, mim_dropout=0.0, mim_decoder="reference", mask_token=True)


@pytest.fixture(scope="module")
def text(core: VFETPS):
    tokenizer = import_open_clip().tokenizer.SimpleTokenizer(
        context_length=core.clip.context_length
    )
    return core.encode_text(tokenizer(["a man in a red coat", "a woman with a white bag"]))


def _reference_mask_count(size=(384, 128), mask_patch=32, ratio=0.6) -> int:
    """The reference's MaskGenerator: ceil(ratio × blocks) blocks of mask_patch pixels."""
    return int(np.ceil((size[0] // mask_patch) * (size[1] // mask_patch) * ratio))


def test_masks_are_whole_32_pixel_blocks_as_many_as_the_references() -> None:
    vit_b16 = SimpleNamespace(grid=(24, 8), patch_size=16)  # 384×128 crops, 16-px patches
    images = torch.zeros(4, 3, 384, 128)
    patch_mask, pixel_mask = mask_patches(images, vit_b16, 0.6, block=2)
    grid = patch_mask.reshape(4, 12, 2, 4, 2).float()  # (B, block rows, 2, block cols, 2)
    assert (grid.amin(dim=(2, 4)) == grid.amax(dim=(2, 4))).all()  # 2×2 patches together
    blocks = grid[:, :, 0, :, 0].sum(dim=(1, 2))
    assert (blocks == _reference_mask_count()).all()  # 29 of 48 blocks
    # The pixel mask is the patch mask at 16 px per patch: 32×32-pixel squares.
    assert torch.equal(pixel_mask[:, 0, ::16, ::16].bool().reshape(4, -1), patch_mask)


def test_masked_patches_become_the_mask_token(core: VFETPS) -> None:
    assert torch.equal(core.mask_token, torch.zeros_like(core.mask_token))  # zeros at the start
    images = torch.randn(2, 3, 192, 64)
    patch_mask, _ = mask_patches(images, core, 0.6, block=2)
    pixel_mask = patch_mask.reshape(2, 1, 12, 4).repeat_interleave(16, 2).repeat_interleave(16, 3)
    scribbled = torch.where(pixel_mask, torch.randn_like(images) * 5, images)
    with torch.no_grad():
        a = core.encode_image(images, patch_mask).tokens
        b = core.encode_image(scribbled, patch_mask).tokens
        # Nothing under a masked patch reaches the encoder: the token stands in for it ...
        assert torch.allclose(a, b, atol=1e-5)
        # ... and unmasked (all False) it is open_clip's own embedding path.
        none = torch.zeros_like(patch_mask)
        assert torch.allclose(
            core.encode_image(images, none).tokens, core.encode_image(images).tokens
        )
        # The token is what the masked patches are replaced by: changing it changes the output.
        # (not by a constant: ln_pre would remove that).
        core.mask_token.copy_(torch.randn_like(core.mask_token))
        c = core.encode_image(images, patch_mask).tokens
        core.mask_token.zero_()
    assert (a - c).abs().max() > 1e-3


def test_decoder_input_is_the_masked_tokens_through_clips_visual_proj(core: VFETPS, text) -> None:
    images = torch.randn(2, 3, 192, 64)
    patch_mask, pixel_mask = mask_patches(images, core, 0.6, block=2)
    seen = {}
    hook = core.mim.register_forward_pre_hook(lambda m, args: seen.update(args=args))
    recon = core.reconstruct(images, text, patch_mask)
    hook.remove()
    tokens = core.encode_image(images, patch_mask).tokens
    expected = tokens @ core.clip.visual.proj
    assert torch.allclose(seen["args"][0], expected, atol=1e-6)
    assert torch.allclose(seen["args"][1], text.tokens @ core.clip.text_projection, atol=1e-6)
    # The decoder has no projection of its own: the pretrained one is trained through it.
    assert all(p is not core.clip.visual.proj for p in core.mim.parameters())
    core.zero_grad()
    masked_l1_loss(recon, images, pixel_mask).backward(retain_graph=True)
    assert core.clip.visual.proj.grad.abs().sum() > 0
    assert core.mask_token.grad.abs().sum() > 0


def test_decoder_is_pre_ln_cross_attention_without_residual_then_clip_blocks(
    core: VFETPS, text
) -> None:
    transformer = import_open_clip().transformer
    decoder = core.mim
    captured = {}
    hooks = [
        decoder.cross_attn.register_forward_hook(lambda m, a, out: captured.update(attn=out[0])),
        decoder.blocks.register_forward_pre_hook(lambda m, a: captured.update(blocks=a[0])),
        decoder.cross_attn.register_forward_pre_hook(lambda m, a: captured.update(q=a[0])),
        decoder.head.register_forward_pre_hook(lambda m, a: captured.update(head=a[0])),
    ]
    images = torch.randn(2, 3, 192, 64)
    patch_mask, _ = mask_patches(images, core, 0.6, block=2)
    with torch.no_grad():
        core.reconstruct(images, text, patch_mask)
    for h in hooks:
        h.remove()
    # The query is layer-normed (pre-LN) ...
    q = captured["q"]
    assert torch.allclose(q.mean(-1), torch.zeros_like(q.mean(-1)), atol=1e-5)
    # ... and the attention's output replaces the tokens: no residual before the blocks.
    assert torch.equal(captured["blocks"], captured["attn"])
    # CLIP residual blocks with QuickGELU, and ln_post before the head (unit-norm features).
    for block in decoder.blocks.resblocks:
        assert isinstance(block, transformer.ResidualAttentionBlock)
        assert isinstance(block.mlp.gelu, transformer.QuickGELU)
    head_in = captured["head"]  # (B, width, gh, gw) after ln_post
    assert torch.allclose(head_in.mean(1), torch.zeros_like(head_in.mean(1)), atol=1e-5)


def test_head_is_xavier_with_zero_bias_and_blocks_use_clip_stds(core: VFETPS) -> None:
    head = core.mim.head
    fan_out, fan_in = head.weight.shape[0], head.weight.shape[1]
    bound = math.sqrt(6.0 / (fan_in + fan_out))
    assert head.weight.abs().max() <= bound and head.weight.std() > 0.5 * bound / math.sqrt(3)
    assert torch.equal(head.bias, torch.zeros_like(head.bias))
    width = core.clip.visual.output_dim
    fc = core.mim.blocks.resblocks[0].mlp.c_fc.weight
    assert fc.std().item() == pytest.approx((2 * width) ** -0.5, rel=0.1)


def test_reconstruction_changes_with_the_caption(core: VFETPS) -> None:
    tokenizer = import_open_clip().tokenizer.SimpleTokenizer(
        context_length=core.clip.context_length
    )
    images = torch.randn(2, 3, 192, 64)
    patch_mask, _ = mask_patches(images, core, 0.6, block=2)
    with torch.no_grad():
        a = core.reconstruct(images, core.encode_text(tokenizer(["red coat"] * 2)), patch_mask)
        b = core.reconstruct(images, core.encode_text(tokenizer(["blue skirt"] * 2)), patch_mask)
    assert a.shape == images.shape and (a - b).abs().max() > 1e-4
