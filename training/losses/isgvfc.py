"""Identity-supervised global visual feature calibration (IS-GVFC), training only."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def select_calibration_rows(person_ids: Tensor, C: int) -> Tensor:
    """Pick up to ``C`` batch rows such that every picked row has another picked row of its person.

    Persons are visited in order of their first appearance in the batch and take their rows
    greedily, whole persons first: person p takes min(n_p, budget left) rows (its first ones in
    batch order) when that is at least 2, otherwise none. Persons with a single row in the batch
    are never taken. The result is deterministic given ``person_ids`` and sorted by row index.

    Args:
        person_ids: (B,) person id of each row.
        C: the largest number of rows to return.

    Returns:
        (n,) int64 row indices on the device of ``person_ids``, n <= C.
    """
    pids = person_ids.reshape(-1)
    device = pids.device
    n_rows = pids.numel()
    if n_rows == 0 or C < 2:
        return torch.empty(0, dtype=torch.long, device=device)

    _, person, counts = torch.unique(pids, return_inverse=True, return_counts=True)
    rows = torch.arange(n_rows, device=device)
    first_row = torch.full_like(counts, n_rows).scatter_reduce(0, person, rows, reduce="amin")

    # Occurrence of each row within its person, in batch order (stable sort by person).
    by_person = torch.argsort(person, stable=True)
    group_start = torch.cumsum(counts, 0) - counts
    occurrence = torch.empty_like(rows)
    occurrence[by_person] = rows - group_start[person[by_person]]

    # Greedy budget over persons in first-appearance order; single-row persons cost nothing.
    visit = torch.argsort(first_row)
    wanted = torch.where(counts >= 2, counts, torch.zeros_like(counts))[visit]
    used_before = torch.cumsum(wanted, 0) - wanted
    take = torch.minimum(wanted, (C - used_before).clamp(min=0))
    take = torch.where(take >= 2, take, torch.zeros_like(take))  # one row alone has no positive
    take_per_person = torch.empty_like(take)
    take_per_person[visit] = take

    return torch.nonzero(occurrence < take_per_person[person]).reshape(-1)


def isgvfc_loss(
    image_feats: Tensor,
    person_ids: Tensor,
    tau: float | Tensor = 0.02,
    eps: float = 1e-8,
) -> Tensor:
    """IS-GVFC loss over a set of C image features (paper eq. 4-5, self pair excluded).

    With y_ij = [pid_i == pid_j] and i, j, k ranging over the C rows::

        p_ij = exp(cos(f_i, f_j) / tau) / sum_{k != i} exp(cos(f_i, f_k) / tau)   (j != i)
        q_ij = y_ij / sum_{k != i} y_ik                                            (j != i)
        L    = (1 / C') * sum_i sum_{j != i} p_ij * log(p_ij / (q_ij + eps))

    The self pair is left out of both distributions: it is trivially the most similar.
    A row without any positive has no target distribution, so it is dropped and C' counts the
    rows that have one (C' = C for rows from ``select_calibration_rows``). If no row has a
    positive the loss is 0, still attached to the graph so that backward runs.

    Args:
        image_feats: (C, D) global image features; normalised here.
        person_ids: (C,) person id of each row.
        tau: temperature; a float or a (learnable) scalar tensor.
        eps: keeps log(q + eps) finite where q_ij = 0.

    Returns:
        Scalar float32 loss.
    """
    with torch.autocast(device_type=image_feats.device.type, enabled=False):
        f = F.normalize(image_feats.float(), dim=-1)
        cos = f @ f.t()
    n = cos.shape[0]
    pids = person_ids.reshape(-1).to(cos.device)
    self_pair = torch.eye(n, dtype=torch.bool, device=cos.device)
    positive = (pids[:, None] == pids[None, :]) & ~self_pair
    n_pos = positive.sum(dim=1)
    has_pos = n_pos > 0

    logits = (cos / tau).masked_fill(self_pair, float("-inf"))
    # Rows without a positive get finite dummy logits: they are dropped below, and a row that is
    # -inf everywhere (C = 1) would otherwise turn into NaN in the forward and the backward pass.
    logits = torch.where(has_pos[:, None], logits, torch.zeros_like(logits))
    log_p = F.log_softmax(logits, dim=1)
    p = log_p.exp()  # 0 on the diagonal of kept rows
    log_p = torch.where(self_pair, torch.zeros_like(log_p), log_p)  # avoids 0 * (-inf)

    q = positive.float() / n_pos.clamp(min=1)[:, None].float()
    per_row = (p * (log_p - torch.log(q + eps))).sum(dim=1)
    per_row = torch.where(has_pos, per_row, torch.zeros_like(per_row))
    return per_row.sum() / has_pos.sum().clamp(min=1)
