import pytest
import torch

from training.losses import cross_modal_triplet_loss


def test_batch_hard_by_hand():
    image = torch.tensor([[2.0, 0.0], [3.0, 4.0], [0.0, 1.0]])  # (1,0), (.6,.8), (0,1)
    text = torch.tensor([[1.0, 0.0], [0.0, 1.0], [3.0, 4.0]])  # (1,0), (0,1), (.6,.8)
    pids = torch.tensor([0, 0, 1])
    # cos(image i, text j): row 1 [1, 0, .6], row 2 [.6, .8, 1], row 3 [0, 1, .8]
    # image anchors (hardest positive, hardest negative):
    #   1: min(1, 0) = 0,   max(.6) = .6      -> .2 - 0 + .6 = .8
    #   2: min(.6, .8) = .6, max(1) = 1       -> .2 - .6 + 1 = .6
    #   3: min(.8) = .8,    max(0, 1) = 1     -> .2 - .8 + 1 = .4
    i2t = (0.8 + 0.6 + 0.4) / 3
    # caption anchors, columns: text 1 [1, .6, 0], text 2 [0, .8, 1], text 3 [.6, 1, .8]
    #   1: min(1, .6) = .6, max(0) = 0        -> .2 - .6 + 0 < 0 -> 0
    #   2: min(0, .8) = 0,  max(1) = 1        -> .2 - 0 + 1 = 1.2
    #   3: min(.8) = .8,    max(.6, 1) = 1    -> .2 - .8 + 1 = .4
    t2i = (0.0 + 1.2 + 0.4) / 3
    got = cross_modal_triplet_loss(image, text, pids, margin=0.2)
    assert got.item() == pytest.approx(i2t + t2i, rel=1e-5)


def test_separated_batch_has_zero_loss():
    feats = torch.eye(3)
    assert cross_modal_triplet_loss(feats, feats, torch.tensor([0, 1, 2])).item() == 0.0


def test_batch_without_negatives_is_zero_and_backward_is_finite():
    image = torch.randn(3, 4, requires_grad=True)
    text = torch.randn(3, 4, requires_grad=True)
    loss = cross_modal_triplet_loss(image, text, torch.tensor([5, 5, 5]))
    assert loss.item() == 0.0
    loss.backward()
    for grad in (image.grad, text.grad):
        assert grad is not None and torch.isfinite(grad).all()


def test_gradients_flow():
    torch.manual_seed(0)
    image = torch.randn(6, 8, requires_grad=True)
    text = torch.randn(6, 8, requires_grad=True)
    loss = cross_modal_triplet_loss(image, text, torch.tensor([0, 0, 1, 1, 2, 2]), margin=1.0)
    assert loss.item() > 0
    loss.backward()
    for grad in (image.grad, text.grad):
        assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0
