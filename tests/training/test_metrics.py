import pytest
import torch

from training.metrics import retrieval_metrics

GALLERY_PIDS = torch.tensor([1, 2, 1, 3, 2])


def toy() -> tuple[torch.Tensor, torch.Tensor]:
    similarity = torch.tensor(
        [
            # query A (person 1): ranking g1(2) g2(1) g3(3) g4(2) g0(1) -> matches at ranks 2, 5
            [0.1, 0.9, 0.8, 0.3, 0.2],
            # query B (person 2): ranking g4(2) g0(1) g1(2) g3(3) g2(1) -> matches at ranks 1, 3
            [0.5, 0.4, 0.1, 0.2, 0.6],
        ]
    )
    return similarity, torch.tensor([1, 2])


def test_toy_ranking_by_hand():
    similarity, query_pids = toy()
    m = retrieval_metrics(similarity, query_pids, GALLERY_PIDS)
    # Rank-1: only B; Rank-5 and Rank-10 (whole gallery): both.
    assert m["R1"] == pytest.approx(50.0)
    assert m["R5"] == pytest.approx(100.0)
    assert m["R10"] == pytest.approx(100.0)
    # AP_A = (1/2)(1/2 + 2/5) = 0.45;  AP_B = (1/2)(1/1 + 2/3) = 5/6
    assert m["mAP"] == pytest.approx(100 * (0.45 + 5 / 6) / 2)
    # INP_A = 2/5;  INP_B = 2/3
    assert m["mINP"] == pytest.approx(100 * (2 / 5 + 2 / 3) / 2)
    assert m["queries"] == 2 and m["queries_without_match"] == 0


def test_custom_ks_and_chunking():
    similarity, query_pids = toy()
    m = retrieval_metrics(similarity, query_pids, GALLERY_PIDS, ks=(1, 2, 3), chunk_size=1)
    # A's first match is at rank 2, B's at rank 1.
    assert (m["R1"], m["R2"], m["R3"]) == pytest.approx((50.0, 100.0, 100.0))
    assert m["mAP"] == pytest.approx(100 * (0.45 + 5 / 6) / 2)


def test_query_without_match_is_excluded_and_counted():
    similarity, query_pids = toy()
    similarity = torch.cat([similarity, torch.tensor([[0.9, 0.8, 0.7, 0.6, 0.5]])])
    query_pids = torch.cat([query_pids, torch.tensor([42])])
    m = retrieval_metrics(similarity, query_pids, GALLERY_PIDS)
    assert m["queries"] == 2 and m["queries_without_match"] == 1
    assert m["R1"] == pytest.approx(50.0)
    assert m["mINP"] == pytest.approx(100 * (2 / 5 + 2 / 3) / 2)


def reference(similarity, query_pids, gallery_pids, ks):
    """Per-query loop over the ranking."""
    sums = {f"R{k}": 0.0 for k in ks} | {"mAP": 0.0, "mINP": 0.0}
    n = 0
    for q in range(similarity.shape[0]):
        order = sorted(range(similarity.shape[1]), key=lambda g: -float(similarity[q, g]))
        hits = [int(gallery_pids[g] == query_pids[q]) for g in order]
        if not any(hits):
            continue
        n += 1
        ranks = [r + 1 for r, h in enumerate(hits) if h]
        for k in ks:
            sums[f"R{k}"] += float(ranks[0] <= k)
        sums["mAP"] += sum((i + 1) / r for i, r in enumerate(ranks)) / len(ranks)
        sums["mINP"] += len(ranks) / ranks[-1]
    return {key: 100 * value / n for key, value in sums.items()}


def test_matches_a_per_query_loop():
    gen = torch.Generator().manual_seed(0)
    similarity = torch.rand(37, 23, generator=gen)  # continuous: no ties
    query_pids = torch.randint(0, 9, (37,), generator=gen)
    gallery_pids = torch.randint(0, 8, (23,), generator=gen)
    got = retrieval_metrics(similarity, query_pids, gallery_pids, chunk_size=5)
    want = reference(similarity, query_pids, gallery_pids, (1, 5, 10))
    for key, value in want.items():
        assert got[key] == pytest.approx(value), key
