"""A tiny parts bundle with a random head, for the parts-mode tests of bundle, index, service."""

from __future__ import annotations

from pathlib import Path

# Small head for the tiny towers (grid 12×4): M = 4, K = 6, d_p = 32 → 128 + 10·32 = 448 columns.
TINY_PARTS = {"width": 64, "embed_dim": 32, "coarse_tokens": 4, "stripes": 6, "heads": 4}
TINY_PARTS_DIM = 128 + (4 + 6) * 32


def make_parts_bundle(out: Path, seed: int = 0) -> Path:
    """The random tiny bundle of ``seed`` (same towers as ``make_random_bundle``) plus a head."""
    from training.export import export_untrained

    if (out / "bundle.json").is_file():
        return out
    return export_untrained(out, "tiny", seed, parts=TINY_PARTS)
