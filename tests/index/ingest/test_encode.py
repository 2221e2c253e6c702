"""encode_images: batches, workers, hashes, normalisation, unreadable files."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from index.ingest.encode import encode_images
from tests.index.conftest import Gallery


def test_matches_direct_encoding(bundle, gallery: Gallery) -> None:
    paths = gallery.paths[:5]
    with_workers = encode_images(bundle, paths, batch_size=2, workers=2, progress=False)
    tensors = torch.stack([bundle.preprocess(Image.open(p).convert("RGB")) for p in paths])
    direct = bundle.encode_images(tensors)
    assert with_workers.vectors.dtype == np.float32
    assert with_workers.vectors.shape == (5, bundle.dim)
    np.testing.assert_allclose(with_workers.vectors, direct, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(with_workers.vectors, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(with_workers.vectors, gallery.vectors[:5], atol=1e-5)
    assert with_workers.kept == [0, 1, 2, 3, 4]
    assert with_workers.sha256 == [hashlib.sha256(p.read_bytes()).hexdigest() for p in paths]


def test_unreadable_files_are_skipped_and_listed(bundle, gallery: Gallery, tmp_path: Path) -> None:
    good = [tmp_path / "a.jpg", tmp_path / "b.jpg"]
    for src, dst in zip(gallery.paths[:2], good, strict=True):
        shutil.copy(src, dst)
    garbage = tmp_path / "garbage.jpg"
    garbage.write_bytes(b"\xff\xd8 not really a jpeg")
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(gallery.paths[3].read_bytes()[:200])
    missing = tmp_path / "missing.jpg"
    paths = [garbage, good[0], missing, empty, good[1], truncated]
    result = encode_images(bundle, paths, batch_size=4, workers=0, progress=False)
    assert result.kept == [1, 4]
    assert result.vectors.shape == (2, bundle.dim)
    np.testing.assert_allclose(result.vectors, gallery.vectors[:2], atol=1e-5)
    failed = dict(result.failures)
    assert set(failed) == {str(garbage), str(missing), str(empty), str(truncated)}
    assert "No such file" in failed[str(missing)]
    assert all(reason for reason in failed.values())


def test_nothing_to_encode(bundle, tmp_path: Path) -> None:
    bad = tmp_path / "x.jpg"
    bad.write_text("text")
    for paths in ([], [bad]):
        result = encode_images(bundle, paths, workers=0, progress=False)
        assert result.vectors.shape == (0, bundle.dim) and result.kept == []
