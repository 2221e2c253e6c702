"""The parts-mode vector layout: one inner product gives the weighted part score (docs/parts.md).

Gallery G = [ĝ; ĉ^1..M; f̂^1..K], each block unit-norm and G itself NOT renormalised (its norm
is √(1+M+K)). Query Q = [w_g ĝ; (w_c/M) ĉ^1..M; (w_f/K) f̂^1..K]. Then

    ⟨G, Q⟩ = w_g cos(g_v, g_t) + (w_c/M) Σ_m cos(c_v^m, c_t^m) + (w_f/K) Σ_k cos(f_v^k, f_t^k)

for any weights, so weights live on the query side and changing them needs no re-index. Nothing
downstream may L2-normalise these vectors: normalising G breaks the score, normalising Q keeps
the ranking but changes the reported scores.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

GLOBAL_LAYOUT = "global"
WEIGHT_NAMES = ("global", "coarse", "fine")
DEFAULT_WEIGHTS = {"global": 1.0, "coarse": 1.0, "fine": 1.0}
# A weight above this drowns the others entirely; refused like a negative one.
MAX_WEIGHT = 100.0
_NORM_TOLERANCE = 1e-2
_LAYOUT = re.compile(r"^parts:M=(\d+),K=(\d+),dp=(\d+)$")


class PartsWeightsError(ValueError):
    """Weights that are not finite, negative, too large or all zero; the message says which."""


def check_weights(weights: Mapping[str, float] | None) -> dict[str, float]:
    """``weights`` completed with the defaults and validated: finite, in [0, MAX_WEIGHT], not
    all zero, and only the names global, coarse, fine."""
    given = dict(weights or {})
    unknown = sorted(set(given) - set(WEIGHT_NAMES))
    if unknown:
        raise PartsWeightsError(f"unknown weights {unknown}: use {', '.join(WEIGHT_NAMES)}")
    out = {**DEFAULT_WEIGHTS, **{k: float(v) for k, v in given.items()}}
    for name, value in out.items():
        if not math.isfinite(value) or not 0.0 <= value <= MAX_WEIGHT:
            raise PartsWeightsError(f"weight {name} must be in [0, {MAX_WEIGHT:g}], got {value}")
    if not any(out.values()):
        raise PartsWeightsError("at least one of the weights global, coarse, fine must be > 0")
    return out


@dataclass(frozen=True)
class PartsLayout:
    """Block sizes of a parts vector: the global embedding, M coarse and K fine part blocks."""

    global_dim: int
    coarse: int  # M
    fine: int  # K
    part_dim: int  # d_p

    @property
    def dim(self) -> int:
        return self.global_dim + (self.coarse + self.fine) * self.part_dim

    @property
    def name(self) -> str:
        """The string an index records; the global dimension is recorded there separately."""
        return f"parts:M={self.coarse},K={self.fine},dp={self.part_dim}"

    @classmethod
    def parse(cls, name: str, global_dim: int) -> PartsLayout | None:
        """The layout an index records: None for ``global``; ValueError for anything unknown."""
        if name == GLOBAL_LAYOUT:
            return None
        match = _LAYOUT.match(name)
        if not match:
            raise ValueError(f"unknown vector layout {name!r}")
        m, k, dp = (int(g) for g in match.groups())
        return cls(global_dim, m, k, dp)

    def _split(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        x = np.asarray(x, dtype=np.float32)
        if x.shape[-1] != self.dim:
            raise ValueError(f"parts vectors have {self.dim} columns, got {x.shape[-1]}")
        g = x[..., : self.global_dim]
        parts = x[..., self.global_dim :].reshape(*x.shape[:-1], -1, self.part_dim)
        return g, parts[..., : self.coarse, :], parts[..., self.coarse :, :]

    def join(self, g: np.ndarray, coarse: np.ndarray, fine: np.ndarray) -> np.ndarray:
        """(B, D_g), (B, M, d_p), (B, K, d_p) → (B, dim) float32 rows, blocks as given."""
        b = g.shape[0]
        return np.concatenate(
            [g, coarse.reshape(b, -1), fine.reshape(b, -1)], axis=1, dtype=np.float32
        )

    def weigh(self, blocks: np.ndarray, weights: Mapping[str, float] | None = None) -> np.ndarray:
        """Unit query blocks [ĝ; ĉ; f̂] (rows) → Q = [w_g ĝ; (w_c/M) ĉ; (w_f/K) f̂]."""
        w = check_weights(weights)
        scale = np.concatenate(
            [
                np.full(self.global_dim, w["global"]),
                np.full(self.coarse * self.part_dim, w["coarse"] / self.coarse),
                np.full(self.fine * self.part_dim, w["fine"] / self.fine),
            ]
        ).astype(np.float32)
        return np.asarray(blocks, dtype=np.float32) * scale

    @property
    def store_scale(self) -> float:
        """1/√(1+M+K): a gallery vector G times this is a unit row, what every store holds."""
        return 1.0 / math.sqrt(1 + self.coarse + self.fine)

    def to_store(self, gallery: np.ndarray) -> np.ndarray:
        """Gallery vectors G as a store holds them: G/√(1+M+K), unit rows. Every row of G has
        the same norm, so this one constant keeps the scores: see :meth:`query_to_store`."""
        return (np.asarray(gallery, dtype=np.float32) * np.float32(self.store_scale)).astype(
            np.float32, copy=False
        )

    def query_to_store(self, query: np.ndarray) -> np.ndarray:
        """A query Q as it is sent to a store: Q·√(1+M+K), so ⟨stored row, sent query⟩ =
        ⟨G, Q⟩ = S, the score hits report."""
        return (np.asarray(query, dtype=np.float32) / np.float32(self.store_scale)).astype(
            np.float32, copy=False
        )

    def block_norms(self, x: np.ndarray) -> np.ndarray:
        """(B, 1+M+K) L2 norms of every block of every row."""
        g, c, f = self._split(np.atleast_2d(x))
        return np.concatenate(
            [np.linalg.norm(g, axis=-1)[:, None], np.linalg.norm(c, axis=-1),
             np.linalg.norm(f, axis=-1)], axis=1,
        )  # fmt: skip

    def unit_blocks(self, x: np.ndarray) -> np.ndarray:
        """Each block of each row scaled to unit norm (not the whole row): what a mean of
        gallery vectors needs before it can serve as a query's blocks again."""
        g, c, f = self._split(np.atleast_2d(x))

        def unit(v: np.ndarray) -> np.ndarray:
            return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-12)

        return self.join(unit(g), unit(c), unit(f))

    def check_gallery(self, x: np.ndarray) -> None:
        """Raise ValueError unless every block of every row is unit-norm."""
        norms = self.block_norms(x)
        bad = np.argwhere(np.abs(norms - 1.0) > _NORM_TOLERANCE)
        if len(bad):
            row, block = (int(i) for i in bad[0])
            raise ValueError(
                f"parts vectors must have unit-norm blocks: row {row} block {block} has norm "
                f"{norms[row, block]:.4f}"
            )
