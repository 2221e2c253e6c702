"""Exact top k from a bf16 scan and an exact re-score: the fast CPU engine for large galleries.

Scanning is what costs: batch 1 is bound by the bytes read (bf16 halves them), batches by the
multiply-adds (bf16 GEMM ran 1.9-3.5× the fp32 rate on this CPU, ``avx512_bf16``). So the
whole gallery is scored in bf16, the best C = max(4k, 64) per query are kept, and those are
re-scored exactly (float64, from the fp32 vectors FAISS holds). ``bf16_bound`` says when that top
k is provably the exact one. A query for which it cannot (a gallery of near-duplicates, where
hundreds of vectors sit within bf16's error of the k-th score) gets a second bf16 pass that
collects every vector whose bf16 score could still belong to its top k and re-scores them all;
only when that set grows past ``WIDE_MAX`` is the query searched again in fp32. Either way the
answer (ids and scores) is the exact one.

The bf16 copy costs half the fp32 gallery's memory (1 GB at 1M × 512) and is made once per
snapshot, in blocks. Where torch's oneDNN build offers it, each block is pre-packed for oneDNN's
GEMM (``mkldnn._reorder_linear_weight``, what torch.compile's CPU backend does for frozen
weights): an unpacked bf16 matrix product with a few query rows repacks the gallery on every call
and ran 1.8-2.2× slower at batch 1 here. Without those operators the plain bf16 product is used.
"""

from __future__ import annotations

import functools
import threading
import time
from dataclasses import dataclass

import numpy as np
import torch

from index.search.bf16_bound import lower_bf16, max_norm, row_errors, upper_exact
from index.search.exact_engines import SCORE_BYTES, Engine
from index.search.flat_view import FlatView
from index.search.topk import RunningTopK

# Gallery rows per bf16 block (256 MB at d=512): few blocks, so few calls per search. Every torch
# call is a parallel region that waits for both cores, which on a shared 2-core machine can
# cost a scheduler slice each; 16 blocks of 64k made batch-1 searches several times slower there.
BLOCK_ROWS = 262_144
CANDIDATE_FACTOR = 4
MIN_CANDIDATES = 64
RESCORE_BYTES = 32 << 20  # float64 candidate vectors held at once
WIDE_MAX = 65_536  # most vectors a second pass re-scores for one query (at most n / 8)
PACK_BATCH_HINT = 64  # the batch oneDNN lays the packed blocks out for (any batch works)


def candidates_for(k: int) -> int:
    """Candidates re-scored per query for a top ``k``."""
    return max(CANDIDATE_FACTOR * k, MIN_CANDIDATES)


@functools.cache
def packing_available() -> bool:
    """Whether this torch build can pre-pack bf16 weights for oneDNN (checked once)."""
    try:
        weight = torch.zeros(8, 16, dtype=torch.bfloat16)
        packed = torch.ops.mkldnn._reorder_linear_weight(weight, 1)
        out = torch.ops.mkldnn._linear_pointwise(
            torch.ones(1, 16, dtype=torch.bfloat16), packed, None, "none", [], ""
        )
    except (AttributeError, RuntimeError, NotImplementedError):
        return False
    return tuple(out.shape) == (1, 8)


@dataclass
class Bf16Counters:
    searches: int = 0
    queries: int = 0
    second_pass_queries: int = 0
    fp32_fallback_queries: int = 0


class Bf16Rescore:
    """bf16 scan of every vector, exact re-score of the best candidates, fp32 where unproven."""

    name = "torch-bf16-rescore"

    def __init__(
        self,
        view: FlatView,
        fallback: Engine,
        *,
        packed: bool | None = None,
        block_rows: int = BLOCK_ROWS,
    ) -> None:
        started = time.perf_counter()
        self._view = view
        self._fallback = fallback
        self.packed = packing_available() if packed is None else packed
        self.block_rows = block_rows
        self._blocks: list[tuple[int, torch.Tensor]] = []
        norm = 0.0
        with torch.inference_mode():
            for start in range(0, view.n, block_rows):
                rows = view.tensor[start : start + block_rows]
                norm = max(norm, max_norm(rows))
                rounded = rows.to(torch.bfloat16)
                if self.packed:
                    rounded = torch.ops.mkldnn._reorder_linear_weight(rounded, PACK_BATCH_HINT)
                self._blocks.append((start, rounded))
        self.gallery_norm = norm
        self.nbytes = view.n * view.dim * 2
        self.build_s = time.perf_counter() - started
        self.counters = Bf16Counters()
        self._lock = threading.Lock()

    def _score(self, queries: torch.Tensor, block: torch.Tensor) -> torch.Tensor:
        if self.packed:
            return torch.ops.mkldnn._linear_pointwise(queries, block, None, "none", [], "")
        return torch.mm(queries, block.T)

    def _candidates(self, queries: torch.Tensor, count: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The best ``count`` bf16 scores per query and their positions, best first."""
        top = RunningTopK(count)
        for start, block in self._blocks:
            top.add(self._score(queries, block), start)
        return top.result()

    def _rescore(
        self, queries: torch.Tensor, rows: torch.Tensor, positions: torch.Tensor
    ) -> torch.Tensor:
        """Exact (float64) scores of (query row, gallery position) pairs, a chunk at a time."""
        out = torch.empty(len(rows), dtype=torch.float64)
        step = max(1, RESCORE_BYTES // (2 * 8 * self._view.dim))
        for at in range(0, len(rows), step):
            found = self._view.tensor[positions[at : at + step]].to(torch.float64)
            out[at : at + step] = (found * queries[rows[at : at + step]]).sum(dim=1)
        return out

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        count = candidates_for(k)
        if count >= self._view.n:  # everything would be re-scored: scan in fp32 instead
            return self._fallback.search(queries, k)
        q = np.array(queries, np.float32)  # a copy: the caller's may be read-only
        scores = np.empty((len(q), k), np.float32)
        positions = np.empty((len(q), k), np.int64)
        floor = np.empty(len(q))  # k-th re-scored score: the exact k-th best is not below it
        proven = np.empty(len(q), bool)
        step = max(1, SCORE_BYTES // (2 * self.block_rows))  # queries per pass over the blocks
        with torch.inference_mode():
            for at in range(0, len(q), step):
                part = slice(at, at + step)
                found = self._first_pass(q[part], k, count)
                scores[part], positions[part], floor[part], proven[part] = found
            second = np.flatnonzero(~proven)
            if len(second):
                best, found, ok = self._second_pass(q[second], k, floor[second])
                scores[second[ok]], positions[second[ok]] = best[ok], found[ok]
                proven[second[ok]] = True
        fallback = np.flatnonzero(~proven)
        if len(fallback):
            scores[fallback], positions[fallback] = self._fallback.search(q[fallback], k)
        with self._lock:
            self.counters.searches += 1
            self.counters.queries += len(q)
            self.counters.second_pass_queries += len(second)
            self.counters.fp32_fallback_queries += len(fallback)
        return scores, positions

    def _first_pass(
        self, q: np.ndarray, k: int, count: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Top k per query from ``count`` bf16 candidates: scores, positions, the k-th score,
        and whether the top k is proven exact."""
        exact_q = torch.from_numpy(q)
        rounded = exact_q.to(torch.bfloat16)
        bf16_scores, candidates = self._candidates(rounded, count)
        rows = torch.arange(len(q)).repeat_interleave(count)
        exact = self._rescore(exact_q.to(torch.float64), rows, candidates.reshape(-1))
        best, order = torch.topk(exact.view(len(q), count), k, dim=1)
        positions = torch.gather(candidates, 1, order)
        errors = row_errors(q, rounded.float().numpy(), self.gallery_norm)
        kth = best[:, -1].numpy()
        proven = kth >= upper_exact(bf16_scores[:, -1].float().numpy(), errors)
        return best.numpy().astype(np.float32), positions.numpy(), kth, proven

    def _second_pass(
        self, q: np.ndarray, k: int, floor: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per query, the exact top k from every vector whose bf16 score reaches the lowest one
        an exact top-k member can have, and whether that set stayed within ``WIDE_MAX``."""
        exact_q = torch.from_numpy(q)
        rounded = exact_q.to(torch.bfloat16)
        errors = row_errors(q, rounded.float().numpy(), self.gallery_norm)
        lowest = torch.from_numpy(lower_bf16(floor, errors).astype(np.float32))[:, None]
        limit = min(WIDE_MAX, max(k, self._view.n // 8))
        rows, positions, totals = [], [], torch.zeros(len(q), dtype=torch.int64)
        for start, block in self._blocks:
            row, col = torch.nonzero(self._score(rounded, block).float() >= lowest, as_tuple=True)
            totals += torch.bincount(row, minlength=len(q))
            rows.append(row)
            positions.append(col + start)
            if bool((totals > limit).all()):
                break
        ok = (totals >= k) & (totals <= limit)  # fewer than k: only if the bound were broken
        row, position = torch.cat(rows), torch.cat(positions)
        keep = ok[row]
        row, position = row[keep], position[keep]
        order = torch.argsort(row, stable=True)  # blocks came one after another: group by row
        row, position = row[order], position[order]
        exact = self._rescore(exact_q.to(torch.float64), row, position)
        # Each query's candidates side by side (padded with -inf), then its top k.
        counts = torch.bincount(row, minlength=len(q))
        slot = torch.arange(len(row)) - (torch.cumsum(counts, 0) - counts)[row]
        width = max(k, int(counts.max()) if len(row) else 0)
        scores = torch.full((len(q), width), float("-inf"), dtype=torch.float64)
        found = torch.zeros((len(q), width), dtype=torch.int64)
        scores[row, slot], found[row, slot] = exact, position
        best, order = torch.topk(scores, k, dim=1)
        return best.numpy().astype(np.float32), torch.gather(found, 1, order).numpy(), ok.numpy()

    def describe(self) -> dict[str, object]:
        with self._lock:
            counters = dict(vars(self.counters))
        return {
            "packed": self.packed,
            "block_rows": self.block_rows,
            "bytes": self.nbytes,
            "build_s": round(self.build_s, 3),
            **counters,
        }
