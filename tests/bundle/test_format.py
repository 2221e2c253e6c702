"""The bundle format: what loads, what is refused, and what the encoders return."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from bundle.encoders import Bundle
from bundle.format import META_FILE, WEIGHTS_FILE, BundleError, read_meta


def test_encoders_return_normalised_float32(random_bundle: Path) -> None:
    bundle = Bundle(random_bundle)
    texts = bundle.encode_text(["a man in a red shirt", "a woman with a white bag"])
    assert texts.dtype == np.float32 and texts.shape == (2, bundle.dim)
    assert np.allclose(np.linalg.norm(texts, axis=1), 1.0, atol=1e-5)
    assert bundle.token_count("red") == 3  # start, word, end


@pytest.mark.parametrize("missing", [META_FILE, WEIGHTS_FILE, "open_clip_config.json"])
def test_a_folder_missing_a_file_is_not_a_bundle(
    random_bundle: Path, tmp_path: Path, missing: str
) -> None:
    copy = tmp_path / "b"
    shutil.copytree(random_bundle, copy)
    (copy / missing).unlink()
    with pytest.raises(BundleError, match=f"{missing} is missing"):
        Bundle(copy)


def test_weights_that_do_not_match_the_fingerprint_are_refused(
    random_bundle: Path, tmp_path: Path
) -> None:
    copy = tmp_path / "b"
    shutil.copytree(random_bundle, copy)
    with open(copy / WEIGHTS_FILE, "r+b") as fh:
        fh.seek(-4, 2)
        fh.write(b"\x00\x01\x02\x03")
    with pytest.raises(BundleError, match="do not match the fingerprint"):
        Bundle(copy)


def test_another_format_version_is_refused(random_bundle: Path, tmp_path: Path) -> None:
    copy = tmp_path / "b"
    shutil.copytree(random_bundle, copy)
    meta = json.loads((copy / META_FILE).read_text())
    (copy / META_FILE).write_text(json.dumps({**meta, "version": 99}))
    with pytest.raises(BundleError, match="expected 'tps-bundle' v1"):
        read_meta(copy)


def test_cuda_without_a_gpu_is_a_clear_error(random_bundle: Path) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    with pytest.raises(BundleError, match="no CUDA device"):
        Bundle(random_bundle, device="cuda")
