"""Similarity Distribution Matching (SDM) loss, computed as IRRA's ``compute_sdm``."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def sdm_loss(
    image_feats: Tensor,
    text_feats: Tensor,
    person_ids: Tensor,
    logit_scale: float | Tensor,
    epsilon: float = 1e-8,
) -> Tensor:
    """SDM loss as IRRA computes it (``objectives.compute_sdm`` without the image-id option).

    With S_ij = logit_scale * cos(f^v_i, f^t_j) and labels y_ij = [pid_i == pid_j]::

        labels_distribute = y / y.sum(dim=1)
        i2t = sum_j softmax(S)_ij   * (log_softmax(S)_ij   - log(labels_distribute_ij + epsilon))
        t2i = sum_j softmax(S^T)_ij * (log_softmax(S^T)_ij - log(labels_distribute_ij + epsilon))
        L   = mean_i i2t + mean_i t2i

    ``logit_scale`` multiplies the cosine directly (IRRA passes 1 / temperature, 50 by default);
    it is not exponentiated. With logit_scale = 1 / tau this equals ``cmpm_loss``.

    Args:
        image_feats: (B, D) image features; normalised here.
        text_feats: (B, D) text features; normalised here.
        person_ids: (B,) person id of each pair.
        logit_scale: multiplier of the cosine similarity, float or scalar tensor.
        epsilon: keeps the log of zero labels finite.

    Returns:
        Scalar float32 loss.
    """
    with torch.autocast(device_type=image_feats.device.type, enabled=False):
        image_norm = F.normalize(image_feats.float(), dim=-1)
        text_norm = F.normalize(text_feats.float(), dim=-1)
        t2i_cosine_theta = text_norm @ image_norm.t()
    i2t_cosine_theta = t2i_cosine_theta.t()

    pid = person_ids.reshape(-1, 1).to(t2i_cosine_theta.device)
    labels = (pid == pid.t()).float()
    # IRRA divides by labels.sum(dim=1) broadcast over columns; since labels is symmetric and
    # y_ij = 1 only within one person, that equals this per-row normalisation.
    labels_distribute = labels / labels.sum(dim=1, keepdim=True)
    log_labels = torch.log(labels_distribute + epsilon)

    text_proj_image = logit_scale * t2i_cosine_theta
    image_proj_text = logit_scale * i2t_cosine_theta

    i2t_pred = F.softmax(image_proj_text, dim=1)
    i2t_loss = i2t_pred * (F.log_softmax(image_proj_text, dim=1) - log_labels)
    t2i_pred = F.softmax(text_proj_image, dim=1)
    t2i_loss = t2i_pred * (F.log_softmax(text_proj_image, dim=1) - log_labels)

    return torch.mean(torch.sum(i2t_loss, dim=1)) + torch.mean(torch.sum(t2i_loss, dim=1))
