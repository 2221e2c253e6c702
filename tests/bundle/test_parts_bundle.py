"""A parts bundle: the head travels in its own file, enters the fingerprint, and loads in either
mode; global mode computes exactly what the global-only bundle of the same towers computes."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from bundle.encoders import Bundle
from bundle.format import PARTS_FILE, WEIGHTS_FILE, BundleError, read_meta, sha256_file
from bundle.parts_layout import PartsLayout
from tests.bundle.parts_bundles import TINY_PARTS_DIM, make_parts_bundle

TEXTS = ["a man in a red coat", "a woman with long black hair carrying a white bag and a phone"]


@pytest.fixture(scope="module")
def parts_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_parts_bundle(tmp_path_factory.mktemp("parts") / "tiny")


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return torch.randn(3, 3, 192, 64, generator=torch.Generator().manual_seed(0))


def test_the_head_is_recorded_and_fingerprinted(parts_bundle: Path, random_bundle: Path) -> None:
    meta = read_meta(parts_bundle)
    cfg = meta.extra["parts"]
    assert {cfg["coarse_tokens"], cfg["stripes"], cfg["embed_dim"]} == {4, 6, 32}
    assert cfg["grid"] == [12, 4] and cfg["pool"] == "max"
    assert cfg["weights"] == {"global": 1.0, "coarse": 1.0, "fine": 1.0}
    # Same towers as the global-only bundle, yet a different fingerprint (head and layout).
    assert sha256_file(parts_bundle / WEIGHTS_FILE) == sha256_file(random_bundle / WEIGHTS_FILE)
    assert meta.fingerprint != read_meta(random_bundle).fingerprint
    # A global-only bundle's fingerprint is still the sha256 of its weights file.
    assert read_meta(random_bundle).fingerprint == sha256_file(random_bundle / WEIGHTS_FILE)


def test_global_mode_equals_the_global_only_bundle(
    parts_bundle: Path, random_bundle: Path, images: torch.Tensor
) -> None:
    parts, plain = Bundle(parts_bundle), Bundle(random_bundle)
    assert parts.dim == plain.dim == 128 and parts.layout == "global"
    assert np.array_equal(parts.encode_text(TEXTS), plain.encode_text(TEXTS))
    assert np.array_equal(parts.encode_images(images), plain.encode_images(images))


def test_parts_mode_gives_the_layout(
    parts_bundle: Path, random_bundle: Path, images: torch.Tensor
) -> None:
    bundle, plain = Bundle(parts_bundle, parts=True), Bundle(random_bundle)
    layout = PartsLayout.parse(bundle.layout, 128)
    assert bundle.layout == "parts:M=4,K=6,dp=32" and bundle.dim == TINY_PARTS_DIM == layout.dim
    gallery, query = bundle.encode_images(images), bundle.encode_text(TEXTS)
    assert gallery.shape == (3, TINY_PARTS_DIM) and query.shape == (2, TINY_PARTS_DIM)
    layout.check_gallery(gallery)  # unit blocks, the row not renormalised
    assert np.allclose(np.linalg.norm(gallery, axis=1), np.sqrt(11), atol=1e-4)
    assert np.allclose(gallery[:, :128], plain.encode_images(images), atol=1e-5)
    # Default weights (1, 1, 1): the query's blocks are ĝ, ĉ/M, f̂/K.
    norms = layout.block_norms(query)
    assert np.allclose(norms, [1.0] + [1 / 4] * 4 + [1 / 6] * 6, atol=1e-4)
    only_global = bundle.encode_text(TEXTS, {"coarse": 0, "fine": 0})
    assert np.allclose(only_global[:, :128], plain.encode_text(TEXTS), atol=1e-5)
    assert not only_global[:, 128:].any()
    assert np.allclose(only_global @ gallery.T, plain.encode_text(TEXTS) @ gallery[:, :128].T)


def test_trimming_stays_exact_in_parts_mode(parts_bundle: Path) -> None:
    trimmed = Bundle(parts_bundle, parts=True)
    full = Bundle(parts_bundle, parts=True, trim_text=False)
    assert trimmed.tokens(TEXTS).shape[1] < full.tokens(TEXTS).shape[1]
    assert np.abs(trimmed.encode_text(TEXTS) - full.encode_text(TEXTS)).max() < 1e-5


def test_parts_mode_is_refused_where_it_cannot_run(parts_bundle: Path, random_bundle: Path) -> None:
    with pytest.raises(BundleError, match="holds no part head"):
        Bundle(random_bundle, parts=True)
    for runtime in ("onnx", "onnx-int8"):
        with pytest.raises(BundleError, match="TPS_RUNTIME=torch"):
            Bundle(parts_bundle, runtime=runtime, parts=True)
    with pytest.raises(BundleError, match="need parts mode"):
        Bundle(parts_bundle).encode_text(TEXTS, {"global": 1.0})


def test_a_changed_or_missing_head_is_refused(parts_bundle: Path, tmp_path: Path) -> None:
    copy = tmp_path / "b"
    shutil.copytree(parts_bundle, copy)
    with open(copy / PARTS_FILE, "r+b") as fh:
        fh.seek(-4, 2)
        fh.write(b"\x00\x00\x80\x3f")
    with pytest.raises(BundleError, match="do not match the fingerprint"):
        Bundle(copy)
    (copy / PARTS_FILE).unlink()
    with pytest.raises(BundleError, match=f"{PARTS_FILE} is missing"):
        Bundle(copy)
