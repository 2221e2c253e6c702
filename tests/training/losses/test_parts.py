"""The part-level losses against values worked by hand (docs/parts.md, tests 3–6)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from training.losses import cmr_loss, coarse_ranking_loss, slot_id_loss
from training.losses.parts import commonality

# docs/parts.md test 3: K = 1, B = 2.
V = torch.tensor([[[1.0, 0.0]], [[0.0, 1.0]]])
T = torch.tensor([[[1.0, 0.0]], [[0.6, 0.8]]])
Y = torch.tensor([0, 1])


def test_cmr_by_hand() -> None:
    kappa = commonality(V, T)
    assert kappa[0, 0, 1].item() == pytest.approx(0.3)
    # hinges 0, 0, 0 and 0.24 + 0.6 − 0.8 = 0.04 → 0.04 / (K·B) = 0.02
    assert cmr_loss(V, T, Y).item() == pytest.approx(0.02, abs=1e-6)


def test_cmr_margin_follows_commonality() -> None:
    # Identical parts (κ = 1) get the floor margin 0.1; opposite ones (κ clipped to 0) get 0.3.
    same = torch.tensor([[[1.0, 0.0]], [[1.0, 0.0]]])
    assert commonality(same, same)[0, 0, 1].item() == pytest.approx(1.0)
    # S(0,0) = S(0,1) = 1: every hinge is the margin; 4 hinges over K·B = 2
    assert cmr_loss(same, same, Y).item() == pytest.approx(4 * 0.1 / 2)
    opposite_v = torch.tensor([[[1.0, 0.0]], [[-1.0, 0.0]]])
    kappa = commonality(opposite_v, opposite_v)
    assert kappa[0, 0, 1].item() == 0.0


def test_commonality_gets_no_gradient() -> None:
    v, t = V.clone().requires_grad_(True), T.clone().requires_grad_(True)
    assert not commonality(v, t).requires_grad
    cmr_loss(v, t, Y).backward()
    assert v.grad is not None and t.grad is not None


def test_coarse_ranking_by_hand() -> None:
    # docs/parts.md test 4: the same vectors as one coarse token, α = 0.3 → 0.1 / 2 = 0.05.
    assert coarse_ranking_loss(V, T, Y, alpha=0.3).item() == pytest.approx(0.05, abs=1e-6)


def test_one_person_batches_give_zero() -> None:
    same_id = torch.tensor([4, 4])
    for value in (cmr_loss(V, T, same_id), coarse_ranking_loss(V, T, same_id)):
        assert torch.isfinite(value) and value.item() == 0.0


def test_slot_id_loss_is_the_hand_cross_entropy() -> None:
    logits = torch.tensor([[[2.0, 0.0, -1.0], [0.0, 1.0, 0.0]]])  # B = 1, 2 slots, 3 ids
    label = torch.tensor([1])
    by_hand = (F.cross_entropy(logits[:, 0], label) + F.cross_entropy(logits[:, 1], label)) / 2
    assert slot_id_loss(logits, label).item() == pytest.approx(by_hand.item())


def test_under_bf16_autocast_everything_stays_fp32() -> None:
    """parts.md: all in fp32. Under autocast κ, the similarities and the losses come out exactly
    as they do without it (autocast would otherwise run the einsums and matmuls in bf16)."""
    gen = torch.Generator().manual_seed(0)
    v, t = (F.normalize(torch.randn(8, 6, 16, generator=gen), dim=-1) for _ in range(2))
    ids = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    logits = torch.randn(8, 10, 4, generator=gen)

    def all_terms() -> list[torch.Tensor]:
        return [
            commonality(v, t),
            cmr_loss(v, t, ids),
            coarse_ranking_loss(v[:, :4], t[:, :4], ids),
            slot_id_loss(logits, ids),
        ]

    fp32 = all_terms()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert torch.matmul(v[:, 0], t[:, 0].T).dtype == torch.bfloat16  # autocast is on
        mixed = all_terms()
    for plain, under in zip(fp32, mixed, strict=True):
        assert under.dtype == torch.float32
        assert torch.equal(plain, under)
