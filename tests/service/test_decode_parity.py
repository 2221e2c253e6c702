"""One decoder: a file indexed by the CLI and the same file uploaded get the same vector."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import numpy as np
from fastapi.testclient import TestClient
from PIL import Image

from bundle.encoders import Bundle
from index.store import GalleryIndex
from service.app import create_app
from service.settings import Settings
from tests.service.support import API_KEY, wait_ready


def _awkward_files(folder: Path) -> dict[str, bytes]:
    """Files whose naive ``convert("RGB")`` differs from what a person sees."""
    folder.mkdir()
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 255, (96, 40, 3), dtype=np.uint8)
    files: dict[str, bytes] = {}

    rotated = io.BytesIO()
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: shown rotated 90° clockwise
    Image.fromarray(pixels).transpose(Image.Transpose.ROTATE_90).save(rotated, "JPEG", exif=exif)
    files["rotated.jpg"] = rotated.getvalue()

    deep = io.BytesIO()
    grey16 = (rng.integers(0, 65535, (96, 40))).astype(np.uint16)
    Image.fromarray(grey16).save(deep, "PNG")  # mode I;16
    files["grey16.png"] = deep.getvalue()

    alpha = io.BytesIO()
    rgba = np.dstack([pixels, rng.integers(0, 255, (96, 40), dtype=np.uint8)])
    Image.fromarray(rgba, "RGBA").save(alpha, "PNG")
    files["alpha.png"] = alpha.getvalue()

    palette = io.BytesIO()
    Image.fromarray(pixels).quantize(16).save(palette, "PNG", transparency=3)
    files["palette.png"] = palette.getvalue()
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return files


def _vectors(index_dir: Path, dim: int) -> dict[str, np.ndarray]:
    """sha256 → stored vector, read back through searches with the unit basis as queries."""
    with GalleryIndex.open(index_dir, use_gpu="never") as index:
        hits = index.search(np.eye(dim, dtype=np.float32), k=index.stats()["count"])
        sha = {item.image_id: item.sha256 for item in index.items()}
    out: dict[str, np.ndarray] = {}
    for axis, row in enumerate(hits):
        for hit in row:
            out.setdefault(sha[hit.image_id], np.zeros(dim, np.float32))[axis] = hit.score
    return out


def test_cli_indexing_and_uploads_give_identical_vectors(
    tmp_path: Path, random_bundle: Path
) -> None:
    files = _awkward_files(tmp_path / "imgs")
    bundle = Bundle(random_bundle)
    cli = subprocess.run(
        [sys.executable, "-m", "index", "build", "--bundle", str(random_bundle),
         "--images", str(tmp_path / "imgs"), "--out", str(tmp_path / "cli"),
         "--device", "cpu", "--workers", "0"],
        capture_output=True, text=True, timeout=300,
        env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert cli.returncode == 0, cli.stderr[-2000:]

    GalleryIndex.create(
        tmp_path / "served", bundle.fingerprint, bundle.dim, use_gpu="never"
    ).close()
    settings = Settings(
        bundle=random_bundle,
        index_dir=tmp_path / "served",
        image_dir=tmp_path / "uploads",
        api_key=API_KEY,
        device="cpu",
        index_gpu="never",
        index_refresh_s=0,
    )
    with TestClient(create_app(settings)) as client:
        wait_ready(client)
        reply = client.post(
            "/v1/gallery",
            files=[("files", (name, data)) for name, data in files.items()],
            headers={"X-API-Key": API_KEY},
        )
        assert reply.status_code == 201, reply.text

    from_cli, from_upload = (
        _vectors(tmp_path / "cli", bundle.dim),
        _vectors(tmp_path / "served", bundle.dim),
    )
    assert len(from_cli) == len(files) and from_cli.keys() == from_upload.keys()
    for sha, vector in from_cli.items():
        np.testing.assert_allclose(from_upload[sha], vector, atol=1e-6)
    # The awkward files really differ from a naive decode (else this test would prove nothing).
    naive = Image.open(tmp_path / "imgs" / "rotated.jpg").convert("RGB")
    assert naive.size == (96, 40)
