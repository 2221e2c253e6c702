import math

import pytest
import torch

from training.losses import cmpm_loss, sdm_loss

EPS = 1e-8


def test_sdm_by_hand():
    image = torch.tensor([[2.0, 0.0], [3.0, 4.0], [0.0, 1.0]])  # (1,0), (.6,.8), (0,1)
    text = torch.tensor([[1.0, 0.0], [0.0, 1.0], [3.0, 4.0]])  # (1,0), (0,1), (.6,.8)
    pids = torch.tensor([4, 4, 8])
    scale = 2.0

    def row(cosines: list[float], labels: list[float]) -> float:
        exps = [math.exp(scale * c) for c in cosines]
        z = sum(exps)
        return sum(
            (e / z) * (math.log(e / z) - math.log(y + EPS))
            for e, y in zip(exps, labels, strict=True)
        )

    half, one = [0.5, 0.5, 0.0], [0.0, 0.0, 1.0]
    # i2t rows: cos(image i, text j); t2i rows: cos(text j, image i).
    i2t = (row([1.0, 0.0, 0.6], half) + row([0.6, 0.8, 1.0], half) + row([0.0, 1.0, 0.8], one)) / 3
    t2i = (row([1.0, 0.6, 0.0], half) + row([0.0, 0.8, 1.0], half) + row([0.6, 1.0, 0.8], one)) / 3
    assert sdm_loss(image, text, pids, scale).item() == pytest.approx(i2t + t2i, rel=1e-5)


def test_sdm_equals_cmpm_with_inverse_temperature():
    torch.manual_seed(0)
    image, text = torch.randn(8, 16), torch.randn(8, 16)
    pids = torch.tensor([0, 0, 0, 1, 1, 2, 3, 3])
    sdm = sdm_loss(image, text, pids, 50.0)
    assert sdm.item() == pytest.approx(cmpm_loss(image, text, pids, tau=0.02).item(), rel=1e-5)


def test_sdm_gradients_and_tensor_scale():
    torch.manual_seed(1)
    image = torch.randn(5, 8, requires_grad=True)
    text = torch.randn(5, 8, requires_grad=True)
    scale = torch.tensor(10.0, requires_grad=True)
    sdm_loss(image, text, torch.tensor([0, 1, 1, 2, 3]), scale).backward()
    for grad in (image.grad, text.grad, scale.grad):
        assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0
