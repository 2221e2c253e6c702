"""docs/parts.md test 7: one inner product of the parts layout is the weighted part score."""

from __future__ import annotations

import numpy as np
import pytest

from bundle.parts_layout import MAX_WEIGHT, PartsLayout, PartsWeightsError, check_weights


def _unit(rng: np.random.Generator, *shape: int) -> np.ndarray:
    x = rng.standard_normal(shape).astype(np.float32)
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _blocks(layout: PartsLayout, n: int, seed: int) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    return (
        _unit(rng, n, layout.global_dim),
        _unit(rng, n, layout.coarse, layout.part_dim),
        _unit(rng, n, layout.fine, layout.part_dim),
    )


def _score(image: tuple, text: tuple, w: dict[str, float], layout: PartsLayout) -> np.ndarray:
    """S of docs/parts.md written out term by term (cosines of unit blocks)."""
    gv, cv, fv = image
    gt, ct, ft = text
    return (
        w["global"] * gt @ gv.T
        + w["coarse"] / layout.coarse * np.einsum("qmd,gmd->qg", ct, cv)
        + w["fine"] / layout.fine * np.einsum("qkd,gkd->qg", ft, fv)
    )


@pytest.mark.parametrize(
    "weights",
    [{}, {"global": 0.5, "coarse": 2.0, "fine": 0.25}, {"global": 0.0, "coarse": 1.0}],
)
def test_inner_product_equals_the_weighted_part_score(weights: dict[str, float]) -> None:
    layout = PartsLayout(global_dim=512, coarse=4, fine=6, part_dim=256)
    image, text = _blocks(layout, 7, seed=1), _blocks(layout, 5, seed=2)
    gallery = layout.join(*image)
    query = layout.weigh(layout.join(*text), weights)
    want = _score(image, text, check_weights(weights), layout)
    assert np.abs(query @ gallery.T - want).max() < 1e-5
    # G is not renormalised: every block is a unit vector, the row has norm √(1+M+K).
    assert np.allclose(np.linalg.norm(gallery, axis=1), np.sqrt(1 + 4 + 6), atol=1e-5)
    layout.check_gallery(gallery)


def test_zero_part_weights_rank_as_the_global_embedding_alone() -> None:
    layout = PartsLayout(global_dim=64, coarse=2, fine=3, part_dim=16)
    image, text = _blocks(layout, 40, seed=3), _blocks(layout, 6, seed=4)
    scores = layout.weigh(layout.join(*text), {"coarse": 0, "fine": 0}) @ layout.join(*image).T
    global_only = text[0] @ image[0].T
    assert np.allclose(scores, global_only, atol=1e-6)
    assert (np.argsort(-scores, axis=1) == np.argsort(-global_only, axis=1)).all()
    # ... while the default weights rank differently on random blocks.
    default = layout.weigh(layout.join(*text)) @ layout.join(*image).T
    assert (np.argsort(-default, axis=1) != np.argsort(-global_only, axis=1)).any()


def test_dimension_and_recorded_name() -> None:
    layout = PartsLayout(global_dim=512, coarse=4, fine=6, part_dim=256)
    assert layout.dim == 512 + (4 + 6) * 256 == 3072
    assert layout.name == "parts:M=4,K=6,dp=256"
    assert PartsLayout.parse(layout.name, 512) == layout
    assert PartsLayout.parse("global", 512) is None
    with pytest.raises(ValueError, match="unknown vector layout"):
        PartsLayout.parse("parts:M=4", 512)


@pytest.mark.parametrize(
    ("weights", "message"),
    [
        ({"global": -1.0}, "must be in"),
        ({"coarse": float("nan")}, "must be in"),
        ({"fine": float("inf")}, "must be in"),
        ({"fine": MAX_WEIGHT * 2}, "must be in"),
        ({"global": 0, "coarse": 0, "fine": 0}, "must be > 0"),
        ({"hands": 1.0}, "unknown weights"),
    ],
)
def test_bad_weights_are_refused(weights: dict[str, float], message: str) -> None:
    with pytest.raises(PartsWeightsError, match=message):
        check_weights(weights)


def test_a_gallery_row_with_a_non_unit_block_is_refused() -> None:
    layout = PartsLayout(global_dim=8, coarse=1, fine=2, part_dim=4)
    gallery = layout.join(*_blocks(layout, 2, seed=5))
    gallery[1, 8:12] *= 2
    with pytest.raises(ValueError, match="row 1 block 1"):
        layout.check_gallery(gallery)
    layout.check_gallery(layout.unit_blocks(gallery))
