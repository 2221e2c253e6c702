import pytest
import torch

from training.losses import masked_l1_loss, patch_mask_to_pixels, random_patch_mask


def test_masked_l1_by_hand():
    pred = torch.tensor([[[[1.0, -2.0], [3.0, 0.5]]]])
    target = torch.tensor([[[[0.5, 0.0], [1.0, 4.0]]]])
    mask = torch.tensor([[[[1.0, 0.0], [0.0, 1.0]]]])
    # masked pixels (0, 0) and (1, 1): (|1 - .5| + |.5 - 4|) / 2 = (.5 + 3.5) / 2
    assert masked_l1_loss(pred, target, mask).item() == pytest.approx(2.0)


def test_masked_l1_broadcasts_over_channels_with_3d_mask():
    pred = torch.zeros(1, 3, 1, 2)
    pred[0, :, 0, 0] = torch.tensor([1.0, 2.0, 3.0])
    pred[0, :, 0, 1] = 100.0  # unmasked
    target = torch.zeros(1, 3, 1, 2)
    mask = torch.tensor([[[1.0, 0.0]]])  # (B, H, W)
    # one masked pixel x 3 channels: (1 + 2 + 3) / 3
    assert masked_l1_loss(pred, target, mask).item() == pytest.approx(2.0)


def test_unmasked_pixels_change_nothing():
    torch.manual_seed(0)
    target = torch.randn(2, 3, 8, 8)
    mask = (torch.rand(2, 1, 8, 8) > 0.5).float()
    pred_a = torch.randn(2, 3, 8, 8)
    pred_b = torch.where(mask.bool(), pred_a, torch.full_like(pred_a, float("nan")))
    pred_b[0, 0][~mask[0, 0].bool()] = float("inf")
    target_b = torch.where(mask.bool(), target, torch.randn_like(target) * 50)
    pred_a.requires_grad_(True)
    pred_b.requires_grad_(True)
    loss_a = masked_l1_loss(pred_a, target, mask)
    loss_b = masked_l1_loss(pred_b, target_b, mask)
    assert loss_a.item() == loss_b.item()
    loss_a.backward()
    loss_b.backward()
    assert torch.equal(pred_a.grad, pred_b.grad)
    assert (pred_a.grad[~mask.bool().expand_as(pred_a)] == 0).all()


def test_empty_mask_gives_zero_with_graph():
    pred = torch.randn(1, 3, 4, 4, requires_grad=True)
    loss = masked_l1_loss(pred, torch.randn(1, 3, 4, 4), torch.zeros(1, 1, 4, 4))
    assert loss.item() == 0.0
    loss.backward()
    assert torch.isfinite(pred.grad).all()


@pytest.mark.parametrize(
    ("grid_h", "grid_w", "ratio"),
    [(24, 8, 0.6), (24, 8, 0.5), (24, 8, 0.0), (24, 8, 1.0), (1, 5, 0.5), (3, 3, 0.75)],
)
def test_random_patch_mask_picks_exactly_round_ratio_n(grid_h, grid_w, ratio):
    mask = random_patch_mask(16, grid_h, grid_w, ratio, generator=torch.Generator().manual_seed(0))
    n = grid_h * grid_w
    assert mask.dtype == torch.bool and mask.shape == (16, n)
    assert (mask.sum(dim=1) == round(ratio * n)).all()


def test_random_patch_mask_reproducible_and_varied():
    first = random_patch_mask(8, 24, 8, 0.6, generator=torch.Generator().manual_seed(3))
    again = random_patch_mask(8, 24, 8, 0.6, generator=torch.Generator().manual_seed(3))
    assert torch.equal(first, again)
    assert len({tuple(row.tolist()) for row in first}) == 8  # each image its own subset


def test_random_patch_mask_rejects_bad_ratio():
    with pytest.raises(ValueError):
        random_patch_mask(1, 2, 2, 1.5)


def test_patch_mask_to_pixels_layout():
    mask = torch.zeros(1, 6, dtype=torch.bool)
    mask[0, 1] = True  # row 0, col 1
    mask[0, 5] = True  # row 1, col 2
    pixels = patch_mask_to_pixels(mask, grid_h=2, grid_w=3, patch=2)
    expected = torch.tensor(
        [
            [0, 0, 1, 1, 0, 0],
            [0, 0, 1, 1, 0, 0],
            [0, 0, 0, 0, 1, 1],
            [0, 0, 0, 0, 1, 1],
        ],
        dtype=torch.float32,
    )
    assert pixels.dtype == torch.float32
    assert torch.equal(pixels, expected[None, None])


def test_full_resolution_mask_feeds_the_loss():
    mask = random_patch_mask(2, 24, 8, 0.6, generator=torch.Generator().manual_seed(1))
    pixels = patch_mask_to_pixels(mask, 24, 8, 16)
    assert pixels.shape == (2, 1, 384, 128)
    assert (pixels.sum(dim=(1, 2, 3)) == 115 * 16 * 16).all()
    # Error 1 on masked pixels and 7 elsewhere: the loss sees only the masked ones.
    pred = torch.where(pixels.bool(), 1.0, 7.0).expand(2, 3, 384, 128)
    assert masked_l1_loss(pred, torch.zeros(2, 3, 384, 128), pixels).item() == pytest.approx(1.0)


def test_block_masking_masks_whole_32_pixel_blocks() -> None:
    from training.model.towers import TowerSpec, build_towers
    from training.model.vfe_tps import VFETPS
    from training.objectives import mask_images

    core = VFETPS(build_towers(TowerSpec("tiny"))[0], use_mim=False)
    gh, gw = core.grid
    images = torch.randn(3, 3, gh * core.patch_size, gw * core.patch_size)
    masked, pixel_mask = mask_images(images, core, 0.5, block=2)
    blocks = pixel_mask.unfold(2, 2 * core.patch_size, 2 * core.patch_size).unfold(
        3, 2 * core.patch_size, 2 * core.patch_size
    )
    per_block = blocks.reshape(*blocks.shape[:4], -1)
    assert (per_block.min(-1).values == per_block.max(-1).values).all()  # all or nothing
    assert torch.allclose(pixel_mask.mean(dim=(1, 2, 3)), torch.full((3,), 0.5))
    assert torch.equal(masked, images * (1 - pixel_mask))
    with pytest.raises(ValueError, match="does not divide"):
        mask_images(images, core, 0.5, block=5)
