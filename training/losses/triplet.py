"""Cross-modal triplet loss with batch-hard mining (UIT's CMT loss)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def _batch_hard_hinge(sim: Tensor, positive: Tensor, margin: float) -> Tensor:
    """Mean over anchor rows of max(0, margin - hardest positive + hardest negative).

    ``sim`` is (anchors, candidates); rows lacking a positive or a negative contribute 0.
    """
    has_pos = positive.any(dim=1)
    has_neg = (~positive).any(dim=1)
    hardest_pos = sim.masked_fill(~positive, float("inf")).amin(dim=1)
    hardest_neg = sim.masked_fill(positive, float("-inf")).amax(dim=1)
    # Replace the +-inf of empty rows before any arithmetic so that no inf - inf reaches autograd.
    zeros = torch.zeros_like(hardest_pos)
    hardest_pos = torch.where(has_pos, hardest_pos, zeros)
    hardest_neg = torch.where(has_neg, hardest_neg, zeros)
    hinge = F.relu(margin - hardest_pos + hardest_neg)
    return torch.where(has_pos & has_neg, hinge, zeros).mean()


def cross_modal_triplet_loss(
    image_feats: Tensor,
    text_feats: Tensor,
    person_ids: Tensor,
    margin: float = 0.2,
) -> Tensor:
    """Cross-modal triplet loss on the hardest positive and negative in the batch, both ways.

    With s_ij = cos(f^v_i, f^t_j) and positives y_ij = [pid_i == pid_j]::

        L_I2T = mean_i max(0, m - min_{j: y_ij} s_ij + max_{j: not y_ij} s_ij)
        L_T2I = mean_j max(0, m - min_{i: y_ij} s_ij + max_{i: not y_ij} s_ij)
        L     = L_I2T + L_T2I

    Every anchor has a positive (its own pair); when the whole batch is one person there is no
    negative and those anchors contribute 0 to the mean.

    Args:
        image_feats: (B, D) image features; normalised here.
        text_feats: (B, D) text features of the paired captions; normalised here.
        person_ids: (B,) person id of each pair.
        margin: hinge margin m.

    Returns:
        Scalar float32 loss.
    """
    with torch.autocast(device_type=image_feats.device.type, enabled=False):
        image_norm = F.normalize(image_feats.float(), dim=-1)
        text_norm = F.normalize(text_feats.float(), dim=-1)
        sim = image_norm @ text_norm.t()  # rows images, columns texts
    pids = person_ids.reshape(-1).to(sim.device)
    positive = pids[:, None] == pids[None, :]
    return _batch_hard_hinge(sim, positive, margin) + _batch_hard_hinge(
        sim.t(), positive.t(), margin
    )
