"""Cross-Modal Projection Matching (CMPM) loss for global image-text alignment."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def _cosine_matrix(a: Tensor, b: Tensor) -> Tensor:
    """Cosine similarity of every row of ``a`` with every row of ``b``, in float32.

    Autocast is switched off so that bf16/fp16 features do not lose the precision that a
    small temperature (logit scale 50) magnifies.
    """
    with torch.autocast(device_type=a.device.type, enabled=False):
        a = F.normalize(a.float(), dim=-1)
        b = F.normalize(b.float(), dim=-1)
        return a @ b.t()


def cmpm_loss(
    image_feats: Tensor,
    text_feats: Tensor,
    person_ids: Tensor,
    tau: float | Tensor = 0.02,
    eps: float = 1e-8,
) -> Tensor:
    """CMPM loss between a batch of image and text features (paper eq. 6-9).

    With y_ij = [pid_i == pid_j] (identity match, not only the paired caption)::

        p_ij  = softmax_j( cos(f^v_i, f^t_j) / tau )
        q_ij  = y_ij / sum_k y_ik
        L_i   = sum_j p_ij * log( p_ij / (q_ij + eps) )
        L_I2T = mean_i L_i,   L_T2I the same with images and texts swapped
        L     = L_I2T + L_T2I

    Args:
        image_feats: (B, D) image features; normalised here.
        text_feats: (B, D) text features of the paired captions; normalised here.
        person_ids: (B,) person id of each pair.
        tau: temperature; a float or a (learnable) scalar tensor.
        eps: keeps log(q + eps) finite where q_ij = 0.

    Returns:
        Scalar float32 loss.
    """
    cos = _cosine_matrix(image_feats, text_feats)  # (B, B): rows images, columns texts
    pids = person_ids.reshape(-1).to(cos.device)
    y = (pids[:, None] == pids[None, :]).to(cos.dtype)
    # y is symmetric, so the same target distribution serves both directions.
    log_q = torch.log(y / y.sum(dim=1, keepdim=True) + eps)

    def direction(logits: Tensor) -> Tensor:
        # Eq. 7 prints an extra 1/B inside L_i; it only rescales the loss, and we follow the
        # original CMPM and IRRA's SDM in leaving it out.
        log_p = F.log_softmax(logits, dim=1)
        return (log_p.exp() * (log_p - log_q)).sum(dim=1).mean()

    logits = cos / tau
    return direction(logits) + direction(logits.t())
