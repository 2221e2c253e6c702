"""The exact search of one flat snapshot on the CPU: engines made once, one chosen per call.

A snapshot is immutable, so what the engines need (the zero-copy view of FAISS's vectors, the
bf16 copy) is made when the snapshot is, and so is the choice of engine per batch size
(``engine_policy``: forced, detected or calibrated). A whole micro-batch goes to one engine
call: the batch is never split here except where an engine bounds its memory.
"""

from __future__ import annotations

import dataclasses
import threading
from collections import Counter
from collections.abc import Mapping
from typing import TYPE_CHECKING

import faiss
import numpy as np

from index.search import engine_calibration
from index.search.cpu_features import CpuFeatures, detect
from index.search.engine_policy import (
    BF16_RESCORE,
    DEFAULT_POLICY,
    FAISS_FLAT,
    NUMPY_FP32,
    EngineChoice,
    EnginePolicy,
)
from index.search.exact_engines import Engine, FaissFlat, NumpyFp32
from index.search.flat_view import FlatView

if TYPE_CHECKING:
    from index.search.bf16_engine import Bf16Rescore


class ExactSearch:
    """Top-k by inner product over every vector of a flat master, answered with its ids."""

    def __init__(
        self,
        master: faiss.Index,
        policy: EnginePolicy = DEFAULT_POLICY,
        cpu: CpuFeatures | None = None,
        trial: engine_calibration.Measure = engine_calibration.measure,
    ) -> None:
        self.policy = policy
        self.view = FlatView(master)
        self._fp32 = NumpyFp32(self.view)  # the bf16 engine's fallback; costs nothing to hold
        self.engines: dict[str, Engine] = {
            FAISS_FLAT: FaissFlat(self.view, master),
            NUMPY_FP32: self._fp32,
        }
        self.bf16: Bf16Rescore | None = None
        self.choice: EngineChoice = engine_calibration.choose(
            policy, cpu or detect(), self.view.vectors, self._make_engines, trial
        )
        if self.choice.uses(BF16_RESCORE):
            self._make_engines((BF16_RESCORE,))
        elif self.bf16 is not None:  # timed, and lost at every batch size: free the copy
            self.bf16 = None
            del self.engines[BF16_RESCORE]
        self._served: Counter[str] = Counter()
        self._lock = threading.Lock()

    def _make_engines(self, names: tuple[str, ...]) -> Mapping[str, Engine]:
        if BF16_RESCORE in names and self.bf16 is None:
            # torch takes 1.7 s to import: opening a small index (a CLI command, a writer) does
            # without it until its first search.
            from index.search.bf16_engine import Bf16Rescore

            self.bf16 = Bf16Rescore(self.view, self._fp32)
            self.engines[BF16_RESCORE] = self.bf16
        return {name: self.engines[name] for name in names}

    def engine_for(self, batch: int) -> str:
        return self.choice.engine_for(batch)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(scores, ids), best first; ``k`` at most the number of vectors."""
        name = self.engine_for(len(queries))
        scores, positions = self.engines[name].search(queries, k)
        with self._lock:
            self._served[name] += 1
        return scores, self.view.ids[positions]

    def describe(self) -> dict[str, object]:
        """For ``stats()``: the engine per batch size and why, what each search used, the bf16
        copy."""
        with self._lock:
            served = dict(self._served)
        policy = dataclasses.asdict(self.policy)
        policy["cache_dir"] = str(policy["cache_dir"]) if policy["cache_dir"] else None
        return {
            **self.choice.describe(),
            "policy": policy,
            "searches": served,
            "bf16": None if self.bf16 is None else self.bf16.describe(),
        }
