"""Text-to-image retrieval metrics: Rank-k, mAP and mINP."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor


def retrieval_metrics(
    similarity: Tensor,
    query_pids: Tensor,
    gallery_pids: Tensor,
    ks: Sequence[int] = (1, 5, 10),
    chunk_size: int = 1024,
) -> dict[str, float]:
    """Rank-k, mAP and mINP (in percent) of a query x gallery similarity matrix.

    Each query ranks the whole gallery by descending similarity (ties keep gallery order).
    With match_r = [gallery item at rank r shows the query's person] and R = sum_r match_r::

        Rank-k = [sum_{r <= k} match_r > 0]
        AP     = (1 / R) * sum_r precision@r * match_r,   precision@r = sum_{s <= r} match_s / r
        INP    = R / (rank of the last match)

    each averaged over the queries that have at least one match in the gallery; the others are
    excluded and counted. k larger than the gallery counts the whole gallery.

    Args:
        similarity: (Q, G) scores, higher = more similar.
        query_pids: (Q,) person id of each query.
        gallery_pids: (G,) person id of each gallery item.
        ks: cut-offs for Rank-k; each gives a key ``f"R{k}"``.
        chunk_size: queries ranked at once, bounding memory to about chunk_size x G.

    Returns:
        ``R{k}`` for each k, ``mAP`` and ``mINP`` in percent; ``queries``, the number of queries
        evaluated, and ``queries_without_match``, the number excluded.
    """
    n_queries, n_gallery = similarity.shape
    device = similarity.device
    query_pids = query_pids.reshape(-1).to(device)
    gallery_pids = gallery_pids.reshape(-1).to(device)
    if query_pids.numel() != n_queries or gallery_pids.numel() != n_gallery:
        raise ValueError("similarity must be (len(query_pids), len(gallery_pids))")

    cutoffs = [min(k, n_gallery) for k in ks]
    hits = torch.zeros(len(ks), dtype=torch.float64, device=device)
    ap_sum = torch.zeros((), dtype=torch.float64, device=device)
    inp_sum = torch.zeros((), dtype=torch.float64, device=device)
    evaluated = torch.zeros((), dtype=torch.long, device=device)
    positions = torch.arange(1, n_gallery + 1, device=device, dtype=torch.float64)

    # An empty gallery leaves every query without a match.
    for start in range(0, n_queries if n_gallery else 0, chunk_size):
        sim = similarity[start : start + chunk_size]
        order = torch.argsort(sim, dim=1, descending=True, stable=True)
        matches = gallery_pids[order] == query_pids[start : start + chunk_size, None]
        n_rel = matches.sum(dim=1)
        valid = n_rel > 0
        matches, n_rel = matches[valid], n_rel[valid].double()
        evaluated += valid.sum()

        cum = matches.cumsum(dim=1)
        for i, k in enumerate(cutoffs):
            if k > 0:
                hits[i] += (cum[:, k - 1] > 0).sum()
        ap_sum += ((cum / positions) * matches).sum(dim=1).div(n_rel).sum()
        last_rank = (positions * matches).amax(dim=1)
        inp_sum += (n_rel / last_rank).sum()

    n_eval = int(evaluated)
    denom = max(n_eval, 1)
    result: dict[str, float] = {f"R{k}": float(hits[i]) * 100.0 / denom for i, k in enumerate(ks)}
    result["mAP"] = float(ap_sum) * 100.0 / denom
    result["mINP"] = float(inp_sum) * 100.0 / denom
    result["queries"] = n_eval
    result["queries_without_match"] = n_queries - n_eval
    return result
