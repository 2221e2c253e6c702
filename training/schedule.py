"""Learning-rate schedule: linear warm-up, then cosine decay to min_ratio × the base rate."""

from __future__ import annotations

import math


def warmup_cosine(
    step: int, total: int, warmup: int, min_ratio: float = 0.0, start: float = 0.0
) -> float:
    """Multiplier of the base learning rate at ``step`` (0-based) of ``total`` steps.

    Warm-up rises linearly from ``start`` × the rate to the full rate at ``step == warmup``, the
    reference code's form (it starts at 0.1). With ``start == 0`` the first step already gets
    1/warmup of the rate instead of nothing, so no step is wasted at zero.
    """
    if warmup > 0 and step < warmup:
        progress = (step + (1 if start == 0 else 0)) / warmup
        return start + (1.0 - start) * progress
    span = max(total - warmup, 1)
    progress = min(max(step - warmup, 0) / span, 1.0)
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))
