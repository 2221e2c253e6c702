"""The reference code's ``gi2id``: an identity cross-entropy on the image features alone."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def image_identity_loss(logits: Tensor, labels: Tensor) -> Tensor:
    """Mean cross-entropy of (B, persons) ``logits`` of f^v against the person labels, in fp32.

    The reference (``model/build.py``, ``gi2id``) scores ``classifier(i_feats)`` with
    ``nn.CrossEntropyLoss(reduction="mean")`` and adds it unweighted; the classifier is a
    Linear over the projected CLS feature (std 0.001, zero bias).
    """
    with torch.autocast(device_type=logits.device.type, enabled=False):
        return F.cross_entropy(logits.float(), labels.long())
