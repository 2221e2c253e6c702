"""Training losses: global alignment (CMPM, SDM), IS-GVFC, cross-modal triplet and TG-MIM."""

from training.losses.cmpm import cmpm_loss
from training.losses.isgvfc import isgvfc_loss, select_calibration_rows
from training.losses.mim import masked_l1_loss, patch_mask_to_pixels, random_patch_mask
from training.losses.sdm import sdm_loss
from training.losses.triplet import cross_modal_triplet_loss

__all__ = [
    "cmpm_loss",
    "cross_modal_triplet_loss",
    "isgvfc_loss",
    "masked_l1_loss",
    "patch_mask_to_pixels",
    "random_patch_mask",
    "sdm_loss",
    "select_calibration_rows",
]
