"""Masking and reconstruction loss for text-guided masked image modelling (TG-MIM)."""

from __future__ import annotations

import torch
from torch import Tensor


def masked_l1_loss(pred: Tensor, target: Tensor, pixel_mask: Tensor) -> Tensor:
    """L1 between prediction and target averaged over the masked pixels only (paper eq. 3).

    ``L = sum_{b,c,h,w} m_bhw * |pred - target|_bchw / (C * sum_{b,h,w} m_bhw)``

    Unmasked pixels are excluded with a select, not a product, so even non-finite values there
    leave the loss and its gradient untouched. With no masked pixel the loss is 0 (graph kept).

    Args:
        pred: (B, C, H, W) reconstruction.
        target: (B, C, H, W) original (normalised) image.
        pixel_mask: (B, 1, H, W) or (B, H, W); nonzero = masked. Broadcast over channels.

    Returns:
        Scalar float32 loss.
    """
    if pixel_mask.dim() == pred.dim() - 1:
        pixel_mask = pixel_mask.unsqueeze(1)
    masked = (pixel_mask != 0).expand_as(pred)
    diff = (pred.float() - target.float()).abs()
    total = torch.where(masked, diff, torch.zeros_like(diff)).sum()
    return total / masked.sum().clamp(min=1)


def random_patch_mask(
    batch: int,
    grid_h: int,
    grid_w: int,
    ratio: float,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> Tensor:
    """Choose exactly round(ratio * N) of the N = grid_h * grid_w patches of each image.

    Patches are numbered row-major (n = row * grid_w + col), the order of a ViT's flattened patch
    tokens. Each image gets an independent uniformly random subset of that size.

    Args:
        batch: number of images B.
        grid_h: patch rows.
        grid_w: patch columns.
        ratio: masking ratio in [0, 1]; the count uses Python's ``round``.
        generator: optional random generator for reproducible masks.
        device: where to build the mask; defaults to the generator's device, else CPU.

    Returns:
        (B, N) bool tensor, True = masked.
    """
    if not 0.0 <= ratio <= 1.0:
        raise ValueError(f"mask ratio must lie in [0, 1], got {ratio}")
    if device is None:
        device = generator.device if generator is not None else "cpu"
    n = grid_h * grid_w
    n_masked = round(ratio * n)
    noise = torch.rand(batch, n, generator=generator, device=device)
    # The n_masked patches with the smallest noise are masked: an exact count per row.
    chosen = noise.argsort(dim=1)[:, :n_masked]
    mask = torch.zeros(batch, n, dtype=torch.bool, device=device)
    return mask.scatter(1, chosen, True)


def patch_mask_to_pixels(mask: Tensor, grid_h: int, grid_w: int, patch: int) -> Tensor:
    """Expand a (B, grid_h * grid_w) row-major patch mask to a (B, 1, H, W) pixel mask.

    H = grid_h * patch, W = grid_w * patch; every pixel of a masked patch is 1.0, others 0.0.
    """
    grid = mask.reshape(-1, 1, grid_h, grid_w).float()
    return grid.repeat_interleave(patch, dim=2).repeat_interleave(patch, dim=3)
