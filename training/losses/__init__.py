"""Training losses: global alignment (CMPM, SDM), IS-GVFC, cross-modal triplet, TG-MIM and the
part-level head's identity, coarse ranking and commonality-margin (CMR) losses, and the
reference code's image-identity loss (gi2id)."""

from training.losses.cmpm import cmpm_loss
from training.losses.gi2id import image_identity_loss
from training.losses.isgvfc import isgvfc_loss, select_calibration_rows
from training.losses.mim import masked_l1_loss, patch_mask_to_pixels, random_patch_mask
from training.losses.parts import cmr_loss, coarse_ranking_loss, slot_id_loss
from training.losses.sdm import sdm_loss
from training.losses.triplet import cross_modal_triplet_loss

__all__ = [
    "cmpm_loss",
    "cmr_loss",
    "coarse_ranking_loss",
    "cross_modal_triplet_loss",
    "image_identity_loss",
    "isgvfc_loss",
    "masked_l1_loss",
    "patch_mask_to_pixels",
    "random_patch_mask",
    "sdm_loss",
    "select_calibration_rows",
    "slot_id_loss",
]
