"""How far a bf16 score can be from the exact one: the certificate behind the bf16 engine.

The bf16 engine ranks by ``bf16(q) · bf16(x)`` (products exact in fp32, summed in fp32, the
result rounded to bf16), keeps the best C candidates per query, and re-scores them exactly. Its
top k is the exact top k when no vector left out could beat the k-th re-scored one, i.e. when

    kth_exact ≥ upper(t_C)

where t_C is the C-th best bf16 score and ``upper(t)`` the highest exact score a vector whose
bf16 score is at most t can have. With u = 2⁻⁸ (bf16's unit roundoff: rounding to nearest moves
each element by at most u of itself, so ‖x − bf16(x)‖ ≤ u‖x‖) and e = x − bf16(x):

    |bf16(q)·bf16(x) − q·x| ≤ ‖q‖‖e_x‖ + ‖e_q‖‖x‖ + ‖e_q‖‖e_x‖       (input rounding)
    |fp32 sum − bf16(q)·bf16(x)| ≤ γ(d+2) ‖bf16(q)‖‖bf16(x)‖         (summing; +2: pair kernels)
    |bf16 output − fp32 sum| ≤ u|sum|, so sum ≤ t + u|t|/(1 − u)   (output rounding)

with γ(m) = m·2⁻²⁴ / (1 − m·2⁻²⁴). The query's terms are computed exactly; the gallery's come
from its largest norm N (‖e_x‖ ≤ uN, ‖bf16(x)‖ ≤ (1 + u)N), measured once when the bf16 copy
is made. Measuring each vector's actual rounding error instead would tighten ‖e_x‖ about 2×
but costs more than the packing itself.

A query that fails the test still has a floor: its k-th re-scored score, which the exact k-th
best cannot be below. Every vector of the exact top k then has a bf16 score of at least
``lower_bf16(floor)``, so collecting every vector at or above that and re-scoring them gives the
exact top k too (the engine's second pass).
"""

from __future__ import annotations

import numpy as np
import torch

U_BF16 = 2.0**-8
U_FP32 = 2.0**-24
SLACK = 1e-6  # absolute margin: float64 re-scoring and the fp32/float64 conversions
NORM_MARGIN = 1.0 + 1e-4  # gallery norms are summed in fp32 (relative error ≤ γ(d) ≈ 3e-5)


def gamma(terms: int) -> float:
    """Relative error bound of an fp32 sum of ``terms`` products (Higham's γ)."""
    return terms * U_FP32 / (1.0 - terms * U_FP32)


def max_norm(rows: torch.Tensor) -> float:
    """The largest L2 norm of fp32 ``rows`` (at least one), rounded up by ``NORM_MARGIN``."""
    return float(torch.linalg.vector_norm(rows, dim=1).max()) * NORM_MARGIN


def row_errors(queries: np.ndarray, rounded: np.ndarray, gallery_norm: float) -> np.ndarray:
    """Per query, the most its fp32 sum of bf16 products can differ from an exact score (before
    the output is rounded to bf16); ``queries`` fp32, ``rounded`` their bf16 values (as float32),
    ``gallery_norm`` the largest norm of the gallery's vectors."""
    q = queries.astype(np.float64)
    r = rounded.astype(np.float64)
    d = q.shape[1]
    q_norm = np.linalg.norm(q, axis=1)
    q_error = np.linalg.norm(q - r, axis=1)
    r_norm = np.linalg.norm(r, axis=1)
    x_norm, x_error, x_rounded = gallery_norm, U_BF16 * gallery_norm, (1 + U_BF16) * gallery_norm
    inputs = q_norm * x_error + q_error * x_norm + q_error * x_error
    return inputs + gamma(d + 2) * r_norm * x_rounded + SLACK


def upper_exact(threshold: np.ndarray, errors: np.ndarray) -> np.ndarray:
    """The highest exact score of a vector whose bf16 score is at most ``threshold``."""
    t = np.asarray(threshold, np.float64)
    return t + U_BF16 * np.abs(t) / (1.0 - U_BF16) + errors


def lower_bf16(floor: np.ndarray, errors: np.ndarray) -> np.ndarray:
    """The lowest bf16 score a vector whose exact score is at least ``floor`` can get: its sum
    is at least floor − error, and rounding to bf16 moves a sum s by at most u|s|."""
    s = np.asarray(floor, np.float64) - errors
    return s - U_BF16 * np.abs(s) - SLACK
