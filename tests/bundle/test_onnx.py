"""ONNX graphs of a bundle: they encode like the torch towers, and are refused when they do not
belong to the bundle's weights."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from bundle.encoders import Bundle
from bundle.format import META_FILE, BundleError, read_meta, sha256_file
from bundle.onnx_files import GRAPH_FILES, read_record
from support.builders import make_onnx_bundle, make_random_bundle

CAPTIONS = [
    "",
    "a man",
    "a woman in a red coat carrying a white bag",
    "the pedestrian wears a grey hoodie, dark blue jeans and white sneakers; he carries a black "
    "backpack and looks at his phone",
    " ".join(["a"] * 54),  # exactly the tiny model's 56-token context
    " ".join(["a person in a long black coat"] * 20),  # truncated
]


def _images(bundle: Bundle, n: int = 5) -> torch.Tensor:
    rng = np.random.default_rng(0)
    pictures = [
        Image.fromarray((rng.random((150 + 20 * i, 60, 3)) * 255).astype(np.uint8))
        for i in range(n)
    ]
    return torch.stack([bundle.preprocess(p) for p in pictures])


@pytest.fixture(scope="module")
def pair(onnx_bundle: Path) -> tuple[Bundle, Bundle]:
    return Bundle(onnx_bundle, runtime="torch"), Bundle(onnx_bundle, runtime="onnx")


def test_text_vectors_agree(pair: tuple[Bundle, Bundle]) -> None:
    torch_bundle, onnx_bundle = pair
    want = torch_bundle.encode_text(CAPTIONS)
    got = onnx_bundle.encode_text(CAPTIONS)
    assert got.dtype == np.float32 and got.shape == want.shape
    assert np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    assert np.min(np.sum(got * want, axis=1)) >= 0.9999
    for i, caption in enumerate(CAPTIONS):  # each alone: a batch cut to its own length
        assert float(onnx_bundle.encode_text([caption])[0] @ want[i]) >= 0.9999


def test_trimmed_onnx_equals_full_context_onnx(onnx_bundle: Path) -> None:
    trimmed = Bundle(onnx_bundle, runtime="onnx")
    full = Bundle(onnx_bundle, runtime="onnx", trim_text=False)
    short = CAPTIONS[:3]
    assert trimmed.tokens(short).shape[1] < full.tokens(short).shape[1]
    assert np.abs(trimmed.encode_text(short) - full.encode_text(short)).max() <= 1e-5


def test_image_vectors_agree(pair: tuple[Bundle, Bundle]) -> None:
    torch_bundle, onnx_bundle = pair
    images = _images(torch_bundle)
    assert torch.equal(images, _images(onnx_bundle))  # the same preprocessing without the model
    want, got = torch_bundle.encode_images(images), onnx_bundle.encode_images(images)
    assert np.min(np.sum(got * want, axis=1)) >= 0.9999
    assert float(onnx_bundle.encode_images(images[:1])[0] @ want[0]) >= 0.9999


def test_preprocessing_matches_open_clip(random_bundle: Path) -> None:
    from bundle.openclip_import import import_open_clip

    _, _, expected = import_open_clip().create_model_and_transforms(f"local-dir:{random_bundle}")
    bundle = Bundle(random_bundle)
    picture = Image.fromarray((np.random.default_rng(1).random((300, 90, 3)) * 255).astype("u1"))
    assert torch.equal(bundle.preprocess(picture), expected(picture))


def test_the_export_is_recorded_against_the_weights(onnx_bundle: Path) -> None:
    meta = read_meta(onnx_bundle)
    record = read_record(meta)
    assert record is not None and record.exported_from == meta.fingerprint
    for name in ("text", "image"):
        assert record.graphs[name] == sha256_file(onnx_bundle / GRAPH_FILES[name])
    assert record.text_trimmable and record.text_pool == "argmax"
    assert record.extra["check"]["worst_cosine"]["text"] >= 0.9999


@pytest.fixture
def copy(onnx_bundle: Path, tmp_path: Path) -> Path:
    out = tmp_path / "b"
    shutil.copytree(onnx_bundle, out)
    return out


def test_a_changed_graph_is_refused(copy: Path) -> None:
    with open(copy / "text.onnx", "r+b") as fh:
        fh.seek(-8, 2)
        fh.write(b"\x00" * 8)
    with pytest.raises(BundleError, match=r"text.onnx does not match the sha256"):
        Bundle(copy, runtime="onnx")
    Bundle(copy, runtime="torch")  # the torch runtime does not read the graphs


def test_graphs_of_other_weights_are_refused(
    copy: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Another model's graphs copied in, with or without their record: either way refused."""
    other = make_onnx_bundle(
        make_random_bundle(tmp_path_factory.mktemp("other") / "src", seed=1),
        tmp_path_factory.mktemp("other") / "onnx",
    )
    for name in ("text.onnx", "image.onnx"):
        shutil.copy(other / name, copy / name)
    with pytest.raises(BundleError, match="does not match the sha256"):
        Bundle(copy, runtime="onnx")
    meta = json.loads((copy / META_FILE).read_text())
    meta["onnx"] = json.loads((other / META_FILE).read_text())["onnx"]
    (copy / META_FILE).write_text(json.dumps(meta))
    with pytest.raises(BundleError, match=r"exported from weights .* not from this bundle"):
        Bundle(copy, runtime="onnx")


def test_a_bundle_without_graphs_says_how_to_export(random_bundle: Path) -> None:
    with pytest.raises(BundleError, match=r"no ONNX graphs.*python -m bundle export-onnx"):
        Bundle(random_bundle, runtime="onnx")
    with pytest.raises(BundleError, match="unknown runtime 'tensorflow'"):
        Bundle(random_bundle, runtime="tensorflow")


def test_a_missing_graph_is_refused(copy: Path) -> None:
    (copy / "image.onnx").unlink()
    with pytest.raises(BundleError, match=r"image.onnx is missing"):
        Bundle(copy, runtime="onnx")


def test_int8_needs_its_graph(onnx_bundle: Path) -> None:
    with pytest.raises(BundleError, match=r"no text.int8.onnx"):
        Bundle(onnx_bundle, runtime="onnx-int8")
