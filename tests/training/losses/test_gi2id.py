"""The reference code's gi2id loss: identity cross-entropy of the image features."""

from __future__ import annotations

import math

import pytest
import torch

from training.losses import image_identity_loss


def test_value_on_a_hand_example() -> None:
    # Two images, three persons. Row 0: logits (0, ln 2, 0) for person 1 → p = 2/4.
    # Row 1: logits (ln 3, 0, 0) for person 0 → p = 3/5.
    logits = torch.tensor([[0.0, math.log(2), 0.0], [math.log(3), 0.0, 0.0]])
    labels = torch.tensor([1, 0])
    expected = -(math.log(2 / 4) + math.log(3 / 5)) / 2
    assert image_identity_loss(logits, labels).item() == pytest.approx(expected, rel=1e-6)


def test_fp32_under_autocast_and_gradient_only_through_the_true_class() -> None:
    logits = torch.zeros(2, 4, dtype=torch.bfloat16, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = image_identity_loss(logits, torch.tensor([2, 3]))
    assert loss.dtype == torch.float32
    assert loss.item() == pytest.approx(math.log(4))
    loss.backward()
    # d/dz of the mean CE: (softmax - onehot) / B = (1/4 - 1) / 2 at the true class.
    assert logits.grad[0, 2].item() == pytest.approx(-0.375)
    assert logits.grad[0, 0].item() == pytest.approx(0.125)
