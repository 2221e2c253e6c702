"""One training step's loss terms: the alignment loss plus whichever auxiliary tasks are on."""

from __future__ import annotations

import torch
from torch import nn

from training.config import TrainConfig
from training.losses import (
    cmpm_loss,
    cross_modal_triplet_loss,
    isgvfc_loss,
    masked_l1_loss,
    patch_mask_to_pixels,
    random_patch_mask,
    sdm_loss,
    select_calibration_rows,
)
from training.model.vfe_tps import VFETPS


def to_grayscale(images: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """Grayscale in pixel space, renormalised: UIT's restoration input (colour comes from text)."""
    pixels = images * std + mean
    gray = (0.299 * pixels[:, 0] + 0.587 * pixels[:, 1] + 0.114 * pixels[:, 2]).unsqueeze(1)
    return (gray.expand_as(pixels) - mean) / std


def mask_images(
    images: torch.Tensor, core: VFETPS, ratio: float, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Zero a random r·N of the patches in normalised space (the mean colour); return both."""
    gh, gw = core.grid
    mask = random_patch_mask(images.shape[0], gh, gw, ratio, generator=generator)
    pixel_mask = patch_mask_to_pixels(mask, gh, gw, core.patch_size).to(images)
    return images * (1 - pixel_mask), pixel_mask


def compute_losses(
    model: nn.Module,
    core: VFETPS,
    images: torch.Tensor,
    tokens: torch.Tensor,
    person_ids: torch.Tensor,
    cfg: TrainConfig,
    norm_stats: tuple[torch.Tensor, torch.Tensor],
) -> dict[str, torch.Tensor]:
    """Weighted loss terms and their sum under ``"loss"``.

    ``model`` is what gets called (a DDP wrapper on several GPUs) and ``core`` the bare model.
    """
    masked = pixel_mask = None
    if cfg.uses("tgmim"):
        masked, pixel_mask = mask_images(images, core, cfg.mask_ratio)
        if cfg.mim_grayscale:
            masked = to_grayscale(masked, *norm_stats) * (1 - pixel_mask)
    image_out, text_out, recon = model(images, tokens, masked)
    f_v, f_t = image_out.features.float(), text_out.features.float()
    tau = core.tau
    terms: dict[str, torch.Tensor] = {}
    if cfg.uses("cmpm"):
        terms["cmpm"] = cmpm_loss(f_v, f_t, person_ids, tau=tau)
    if cfg.uses("sdm"):
        terms["sdm"] = sdm_loss(f_v, f_t, person_ids, logit_scale=1.0 / tau)
    if cfg.uses("triplet"):
        terms["triplet"] = cfg.lambda_triplet * cross_modal_triplet_loss(
            f_v, f_t, person_ids, margin=cfg.triplet_margin
        )
    if cfg.uses("isgvfc"):
        rows = select_calibration_rows(person_ids, cfg.gvfc_images)
        terms["isgvfc"] = cfg.lambda_gvfc * isgvfc_loss(f_v[rows], person_ids[rows], tau=tau)
    if recon is not None:
        terms["tgmim"] = cfg.lambda_mim * masked_l1_loss(recon.float(), images, pixel_mask)
    terms["loss"] = torch.stack(list(terms.values())).sum()
    return terms
