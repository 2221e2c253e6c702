import math

import pytest
import torch

from training.losses import isgvfc_loss, select_calibration_rows

EPS = 1e-8


def kl_row(cosines: list[float], targets: list[float], tau: float) -> float:
    """sum_j p_j log(p_j / (q_j + eps)) over the other rows j, in scalar arithmetic."""
    exps = [math.exp(c / tau) for c in cosines]
    z = sum(exps)
    return sum((e / z) * math.log((e / z) / (q + EPS)) for e, q in zip(exps, targets, strict=True))


def test_row_without_positive_is_dropped_by_hand():
    feats = torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]])
    pids = torch.tensor([0, 0, 1])
    # tau = 0.5; the self pair is left out of each row.
    # row 1 vs rows 2, 3: cos .6 (positive), 0
    p12 = math.exp(1.2) / (math.exp(1.2) + math.exp(0.0))
    p13 = math.exp(0.0) / (math.exp(1.2) + math.exp(0.0))
    l1 = p12 * math.log(p12 / (1 + EPS)) + p13 * math.log(p13 / EPS)
    # row 2 vs rows 1, 3: cos .6 (positive), .8
    p21 = math.exp(1.2) / (math.exp(1.2) + math.exp(1.6))
    p23 = math.exp(1.6) / (math.exp(1.2) + math.exp(1.6))
    l2 = p21 * math.log(p21 / (1 + EPS)) + p23 * math.log(p23 / EPS)
    # row 3 is the only image of person 1: no target, dropped from the mean.
    expected = (l1 + l2) / 2
    assert isgvfc_loss(feats, pids, tau=0.5).item() == pytest.approx(expected, rel=1e-5)


# f1 = (1, 0), f2 = (.6, .8), f3 = (0, 1), f4 = (.8, .6); scaled to check the normalisation.
FOUR = torch.tensor([[2.0, 0.0], [0.6, 0.8], [0.0, 3.0], [8.0, 6.0]])
# cos: f1.f2 = .6, f1.f3 = 0, f1.f4 = .8, f2.f3 = .8, f2.f4 = .96, f3.f4 = .6


def test_two_pairs_by_hand():
    pids = torch.tensor([0, 0, 1, 1])
    tau = 0.25
    expected = (
        kl_row([0.6, 0.0, 0.8], [1, 0, 0], tau)  # row 1 vs 2, 3, 4
        + kl_row([0.6, 0.8, 0.96], [1, 0, 0], tau)  # row 2 vs 1, 3, 4
        + kl_row([0.0, 0.8, 0.6], [0, 0, 1], tau)  # row 3 vs 1, 2, 4
        + kl_row([0.8, 0.96, 0.6], [0, 0, 1], tau)  # row 4 vs 1, 2, 3
    ) / 4
    assert isgvfc_loss(FOUR, pids, tau=tau).item() == pytest.approx(expected, rel=1e-5)


def test_three_images_of_one_person_share_the_target():
    pids = torch.tensor([0, 0, 0, 1])
    tau = 0.25
    expected = (
        kl_row([0.6, 0.0, 0.8], [0.5, 0.5, 0], tau)
        + kl_row([0.6, 0.8, 0.96], [0.5, 0.5, 0], tau)
        + kl_row([0.0, 0.8, 0.6], [0.5, 0.5, 0], tau)
    ) / 3  # row 4 has no positive
    assert isgvfc_loss(FOUR, pids, tau=tau).item() == pytest.approx(expected, rel=1e-5)


def test_self_pair_is_excluded():
    # Identical images of a person, persons orthogonal: with the self pair left out the predicted
    # distribution is one-hot on the other image, exactly the target.
    feats = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
    loss = isgvfc_loss(feats, torch.tensor([0, 0, 1, 1]))
    assert abs(loss.item()) < 1e-6


@pytest.mark.parametrize(
    "pids",
    [torch.tensor([0, 0, 1]), torch.tensor([0, 1, 2]), torch.tensor([3])],
    ids=["one-row-without-positive", "no-positive-at-all", "single-row"],
)
def test_zero_gradient_safe(pids):
    feats = torch.randn(len(pids), 4, requires_grad=True)
    tau = torch.tensor(0.02, requires_grad=True)
    loss = isgvfc_loss(feats, pids, tau=tau)
    assert torch.isfinite(loss)
    loss.backward()
    assert torch.isfinite(feats.grad).all()
    assert torch.isfinite(tau.grad)


def test_no_positive_gives_zero_with_graph():
    feats = torch.randn(3, 4, requires_grad=True)
    loss = isgvfc_loss(feats, torch.tensor([0, 1, 2]))
    assert loss.item() == 0.0 and loss.requires_grad
    loss.backward()
    assert torch.equal(feats.grad, torch.zeros_like(feats))


def test_gradients_flow():
    torch.manual_seed(0)
    feats = torch.randn(6, 8, requires_grad=True)
    isgvfc_loss(feats, torch.tensor([0, 0, 1, 1, 2, 2]), tau=0.1).backward()
    assert torch.isfinite(feats.grad).all() and feats.grad.abs().sum() > 0


def test_select_whole_persons_in_first_appearance_order():
    pids = torch.tensor([5, 3, 5, 7, 3, 3, 9, 7])
    # Persons by first appearance: 5 (rows 0, 2), 3 (rows 1, 4, 5), 7 (rows 3, 7), 9 (row 6).
    assert select_calibration_rows(pids, 20).tolist() == [0, 1, 2, 3, 4, 5, 7]
    # C = 4: person 5 takes 2, person 3 takes its first 2 rows.
    assert select_calibration_rows(pids, 4).tolist() == [0, 1, 2, 4]
    # C = 3: one row left after person 5; a single row would have no positive.
    assert select_calibration_rows(pids, 3).tolist() == [0, 2]
    # C = 7: 5 (2) + 3 (3) + 7 (2).
    assert select_calibration_rows(pids, 7).tolist() == [0, 1, 2, 3, 4, 5, 7]
    assert select_calibration_rows(pids, 1).tolist() == []
    assert select_calibration_rows(torch.tensor([1, 2, 3]), 20).tolist() == []


def test_selected_rows_always_have_a_positive():
    gen = torch.Generator().manual_seed(0)
    for trial in range(200):
        batch = int(torch.randint(1, 40, (1,), generator=gen))
        pids = torch.randint(0, 12, (batch,), generator=gen)
        c = trial % 25
        rows = select_calibration_rows(pids, c)
        assert rows.dtype == torch.long
        assert len(rows) <= c
        assert len(set(rows.tolist())) == len(rows)
        chosen = pids[rows].tolist()
        assert all(chosen.count(p) >= 2 for p in chosen)
        assert torch.equal(rows, select_calibration_rows(pids.clone(), c))  # deterministic
        # Selected rows feed the loss with a positive each: the mean is over all C rows.
        if len(rows):
            loss = isgvfc_loss(torch.randn(batch, 4)[rows], pids[rows])
            assert torch.isfinite(loss)


def test_selection_fills_the_budget_with_pk_batches():
    pids = torch.arange(25).repeat_interleave(4)  # P = 25 persons x K = 4 images
    rows = select_calibration_rows(pids, 20)
    assert rows.tolist() == list(range(20))
