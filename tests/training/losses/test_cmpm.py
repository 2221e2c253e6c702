import math

import pytest
import torch

from training.losses import cmpm_loss

EPS = 1e-8


def kl_row(cosines: list[float], targets: list[float], tau: float) -> float:
    """sum_j p_j log(p_j / (q_j + eps)) for one row, in scalar arithmetic."""
    exps = [math.exp(c / tau) for c in cosines]
    z = sum(exps)
    return sum((e / z) * math.log((e / z) / (q + EPS)) for e, q in zip(exps, targets, strict=True))


def test_two_persons_orthogonal_by_hand():
    # Unnormalised inputs: cosines are the identity matrix.
    image = torch.tensor([[3.0, 0.0], [0.0, 2.0]])
    text = torch.tensor([[1.0, 0.0], [0.0, 5.0]])
    pids = torch.tensor([7, 9])
    # tau = 0.5: the matching pair has logit 2, the other logit 0.
    p_hit = math.exp(2) / (math.exp(2) + 1)
    p_miss = 1 / (math.exp(2) + 1)
    row = p_hit * math.log(p_hit / (1 + EPS)) + p_miss * math.log(p_miss / EPS)
    # Both rows equal, so each direction is one row's value; I2T + T2I doubles it.
    expected = 2 * row
    assert cmpm_loss(image, text, pids, tau=0.5).item() == pytest.approx(expected, rel=1e-5)


def test_identity_match_counts_other_captions_of_the_same_person():
    image = torch.tensor([[2.0, 0.0], [3.0, 4.0], [0.0, 1.0]])  # (1,0), (.6,.8), (0,1)
    text = torch.tensor([[1.0, 0.0], [0.0, 1.0], [3.0, 4.0]])  # (1,0), (0,1), (.6,.8)
    pids = torch.tensor([0, 0, 1])
    # cos(image i, text j):
    #   image 1: [1.0, 0.0, 0.6]   image 2: [0.6, 0.8, 1.0]   image 3: [0.0, 1.0, 0.8]
    # person 0 rows target [1/2, 1/2, 0], person 1 rows target [0, 0, 1].
    half, one = [0.5, 0.5, 0.0], [0.0, 0.0, 1.0]
    i2t = (
        kl_row([1.0, 0.0, 0.6], half, 0.5)
        + kl_row([0.6, 0.8, 1.0], half, 0.5)
        + kl_row([0.0, 1.0, 0.8], one, 0.5)
    ) / 3
    # Columns of the same matrix, one per caption.
    t2i = (
        kl_row([1.0, 0.6, 0.0], half, 0.5)
        + kl_row([0.0, 0.8, 1.0], half, 0.5)
        + kl_row([0.6, 1.0, 0.8], one, 0.5)
    ) / 3
    got = cmpm_loss(image, text, pids, tau=0.5)
    assert got.item() == pytest.approx(i2t + t2i, rel=1e-5)


def test_default_temperature_and_aligned_batch_is_near_zero():
    feats = torch.eye(3)
    loss = cmpm_loss(feats, feats, torch.tensor([0, 1, 2]))  # tau = 0.02: p is one-hot
    assert abs(loss.item()) < 1e-6


def test_tensor_temperature_matches_float_and_gets_gradient():
    torch.manual_seed(0)
    image, text = torch.randn(6, 4), torch.randn(6, 4)
    pids = torch.tensor([0, 0, 1, 1, 2, 3])
    tau = torch.tensor(0.1, requires_grad=True)
    loss = cmpm_loss(image, text, pids, tau=tau)
    assert loss.item() == pytest.approx(cmpm_loss(image, text, pids, tau=0.1).item(), rel=1e-6)
    loss.backward()
    assert tau.grad is not None and torch.isfinite(tau.grad) and tau.grad != 0


def test_gradients_flow_to_both_modalities():
    torch.manual_seed(1)
    image = torch.randn(5, 8, requires_grad=True)
    text = torch.randn(5, 8, requires_grad=True)
    cmpm_loss(image, text, torch.tensor([0, 0, 1, 2, 2])).backward()
    for grad in (image.grad, text.grad):
        assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0


def test_low_precision_inputs_give_float32_loss():
    torch.manual_seed(2)
    image, text = torch.randn(4, 8), torch.randn(4, 8)
    pids = torch.tensor([0, 1, 1, 2])
    low = cmpm_loss(image.bfloat16(), text.bfloat16(), pids)
    assert low.dtype == torch.float32
    assert low.item() == pytest.approx(
        cmpm_loss(image.bfloat16().float(), text.bfloat16().float(), pids).item(), rel=1e-6
    )


def test_similarities_stay_float32_under_autocast():
    torch.manual_seed(3)
    image, text = torch.randn(4, 8), torch.randn(4, 8)
    pids = torch.tensor([0, 1, 1, 2])
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        loss = cmpm_loss(image, text, pids)
    assert loss.dtype == torch.float32
    assert loss.item() == pytest.approx(cmpm_loss(image, text, pids).item(), rel=1e-6)
