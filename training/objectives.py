"""One training step's loss terms: the alignment loss plus whichever auxiliary tasks are on."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from training.config import TrainConfig
from training.distributed import gather_with_local_grad, world_size
from training.losses import (
    cmpm_loss,
    cmr_loss,
    coarse_ranking_loss,
    cross_modal_triplet_loss,
    image_identity_loss,
    isgvfc_loss,
    masked_l1_loss,
    patch_mask_to_pixels,
    random_patch_mask,
    sdm_loss,
    select_calibration_rows,
    slot_id_loss,
)
from training.model.vfe_tps import VFETPS


def to_grayscale(images: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """Grayscale in pixel space, renormalised: UIT's restoration input (colour comes from text)."""
    pixels = images * std + mean
    gray = (0.299 * pixels[:, 0] + 0.587 * pixels[:, 1] + 0.114 * pixels[:, 2]).unsqueeze(1)
    return (gray.expand_as(pixels) - mean) / std


def mask_patches(
    images: torch.Tensor,
    core: VFETPS,
    ratio: float,
    block: int = 1,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Choose a random r·N of the blocks of ``block``×``block`` patches; return the (B, N)
    patch mask (row-major, True = masked) and its (B, 1, H, W) pixel mask. The paper masks
    single patches (block 1); the reference code 32×32-pixel blocks (block 2 at patch 16). The
    count is round(r·N) where the reference takes ceil(r·N): the same 29 of 48 blocks at 0.6."""
    gh, gw = core.grid
    if gh % block or gw % block:
        raise ValueError(f"mask_block {block} does not divide the {gh}×{gw} patch grid")
    bh, bw = gh // block, gw // block
    blocks = random_patch_mask(images.shape[0], bh, bw, ratio, generator=generator)
    grid = blocks.reshape(-1, bh, bw).repeat_interleave(block, 1).repeat_interleave(block, 2)
    patch_mask = grid.reshape(-1, gh * gw).to(images.device)
    return patch_mask, patch_mask_to_pixels(patch_mask, gh, gw, core.patch_size).to(images)


def mask_images(
    images: torch.Tensor,
    core: VFETPS,
    ratio: float,
    block: int = 1,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Zero the chosen blocks in normalised space (the mean colour); return the masked images
    and the pixel mask (the paper's masking, ``mim_mask zero``)."""
    _, pixel_mask = mask_patches(images, core, ratio, block, generator)
    return images * (1 - pixel_mask), pixel_mask


@dataclass
class StepLosses:
    """``terms``: each weighted loss and their sum ``"loss"``, the numbers to log. ``objective``:
    what to back-propagate; it equals ``terms["loss"]`` except under gathered features, where
    the alignment terms are scaled by the process count so that DDP's gradient average yields
    exactly the gradient of the global-batch loss."""

    objective: torch.Tensor
    terms: dict[str, torch.Tensor]


def compute_losses(
    model: nn.Module,
    core: VFETPS,
    images: torch.Tensor,
    tokens: torch.Tensor,
    person_ids: torch.Tensor,
    cfg: TrainConfig,
    norm_stats: tuple[torch.Tensor, torch.Tensor],
) -> StepLosses:
    """The step's loss terms and the objective to back-propagate.

    ``model`` is what gets called (a DDP wrapper on several GPUs) and ``core`` the bare model.
    With ``cfg.gather_features`` under several processes, the alignment and calibration losses
    run over the whole global batch (every process's features, gradient through its own);
    TG-MIM is per image and stays local (DDP's average of equal-sized shares is the global mean).
    """
    masked = pixel_mask = patch_mask = None
    if cfg.uses("tgmim"):
        patch_mask, pixel_mask = mask_patches(images, core, cfg.mask_ratio, cfg.mask_block)
        if cfg.mim_mask == "token":
            # The pixels stay; the encoder puts the mask token in place of those patches.
            masked = to_grayscale(images, *norm_stats) if cfg.mim_grayscale else images
        else:
            masked, patch_mask = images * (1 - pixel_mask), None
            if cfg.mim_grayscale:
                masked = to_grayscale(masked, *norm_stats) * (1 - pixel_mask)
    out = model(images, tokens, masked, patch_mask)
    recon, local_ids = out.recon, person_ids
    f_v, f_t = out.image.features.float(), out.text.features.float()
    world = world_size() if cfg.gather_features else 1
    gather = gather_with_local_grad if world > 1 else (lambda x: x)
    f_v, f_t, person_ids = gather(f_v), gather(f_t), gather(person_ids)
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
    if out.image_parts is not None and out.text_parts is not None:
        # The ranking losses compare across the (gathered) batch; identity losses are per item.
        image, text = out.image_parts, out.text_parts
        terms["parts_rank"] = cfg.lambda_parts * (
            coarse_ranking_loss(
                gather(image.coarse), gather(text.coarse), person_ids, cfg.parts_alpha
            )
            + cmr_loss(
                gather(image.fine),
                gather(text.fine),
                person_ids,
                cfg.parts_margin_low,
                cfg.parts_margin_high,
            )
        )
    global_terms = torch.stack(list(terms.values())).sum()
    objective = global_terms * world
    if recon is not None:
        terms["tgmim"] = cfg.lambda_mim * masked_l1_loss(recon.float(), images, pixel_mask)
        objective = objective + terms["tgmim"]
    if out.id_logits:
        terms["parts_id"] = cfg.lambda_parts * parts_id_loss(out.id_logits, local_ids)
        objective = objective + terms["parts_id"]
    if out.gi2id_logits is not None:
        # Per image and local, like TG-MIM: DDP's average of equal shares is the global mean.
        terms["gi2id"] = cfg.lambda_gi2id * image_identity_loss(out.gi2id_logits, local_ids)
        objective = objective + terms["gi2id"]
    terms["loss"] = torch.stack(list(terms.values())).sum()
    return StepLosses(objective, terms)


def parts_id_loss(logits: dict[str, torch.Tensor], labels: torch.Tensor) -> torch.Tensor:
    """ℓ_ID^coarse + ℓ_ID^fine (+ the global one when on): each the mean cross-entropy over its
    slots and both modalities."""
    groups = sorted({name.rsplit("_", 1)[0] for name in logits})
    return sum(
        0.5
        * (slot_id_loss(logits[f"{g}_image"], labels) + slot_id_loss(logits[f"{g}_text"], labels))
        for g in groups
    )
