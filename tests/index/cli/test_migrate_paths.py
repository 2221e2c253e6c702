"""Migration with ``images_root``: image paths inside the source's image folder are stored
relative to it, and a service resolves them against its own image folder, so hosts need not
mount the images at one path. Paths outside the folder are kept as they were."""

from __future__ import annotations

import hashlib
from pathlib import Path

from index.cli.migrate import migrate
from index.items import ItemMeta
from index.stores import create_store, open_store
from service.image_paths import image_path
from service.storage import ImageStore
from tests.index.conftest import random_unit

FP = "a" * 64
DIM = 8


def test_paths_inside_the_image_folder_become_relative(tmp_path: Path) -> None:
    old_root = tmp_path / "host-a" / "images"
    sha = [hashlib.sha256(str(j).encode()).hexdigest() for j in range(3)]
    paths = [old_root / s[:2] / f"{s}.jpg" for s in sha[:2]] + [Path("/data/set/x.jpg")]
    items = [ItemMeta(f"i{j}", None, str(p), sha[j], 1.0) for j, p in enumerate(paths)]
    source = create_store(tmp_path / "faiss", FP, DIM, use_gpu="never")
    source.add(random_unit(3, DIM, 1), items)
    source.close()

    summary = migrate(tmp_path / "faiss", tmp_path / "copy.db", images_root=old_root)
    assert summary["copied"] == 3 and summary["mismatches"] == 0

    copy = open_store(tmp_path / "copy.db")
    try:
        stored = {i.image_id: i.source_path for i in copy.items()}
    finally:
        copy.close()
    assert stored == {
        "i0": f"{sha[0][:2]}/{sha[0]}.jpg",
        "i1": f"{sha[1][:2]}/{sha[1]}.jpg",
        "i2": "/data/set/x.jpg",
    }
    # Another host mounts the images elsewhere: the relative path is read from its folder.
    here = ImageStore(tmp_path / "host-b" / "mnt" / "images")
    assert image_path(here, stored["i0"]) == here.root / sha[0][:2] / f"{sha[0]}.jpg"
    assert image_path(here, stored["i2"]) == Path("/data/set/x.jpg")
    escaped = image_path(here, "../../etc/passwd")  # never outside the folder
    assert escaped.is_relative_to(here.root) and not escaped.exists()


def test_rebuild_reads_relative_paths_under_images_root(
    tmp_path: Path, synthetic_root: Path, random_bundle: Path, second_bundle: Path, capsys
) -> None:
    """A gallery of uploads (paths relative to the image folder) is re-encoded from the folder
    named by --images-root; without it the rebuild refuses with one line and changes nothing."""
    import shutil

    from bundle.encoders import Bundle
    from index.cli import main
    from index.ingest.encode import encode_images

    images = tmp_path / "mounted" / "images"
    files = sorted((synthetic_root / "imgs").rglob("*.jpg"))[:3]
    relative = []
    for j, src in enumerate(files):
        (images / "ab").mkdir(parents=True, exist_ok=True)
        shutil.copy(src, images / "ab" / f"{j}.jpg")
        relative.append(f"ab/{j}.jpg")
    bundle = Bundle(random_bundle, device="cpu")
    encoded = encode_images(bundle, [images / r for r in relative], batch_size=8, workers=0)
    items = [
        ItemMeta(f"u{j}", None, r, sha, 1.0)
        for j, (r, sha) in enumerate(zip(relative, encoded.sha256, strict=True))
    ]
    store = create_store(tmp_path / "gallery", bundle.fingerprint, bundle.dim, use_gpu="never")
    store.add(encoded.vectors, items)
    store.close()

    fast = ("--workers", "0", "--device", "cpu")
    args = ["rebuild", str(tmp_path / "gallery"), "--bundle", str(second_bundle), *fast]
    capsys.readouterr()  # the encoding's progress above
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--images-root" in err and "relative" in err
    assert open_store(tmp_path / "gallery").fingerprint == bundle.fingerprint  # unchanged

    assert main([*args, "--images-root", str(images)]) == 0
    rebuilt = open_store(tmp_path / "gallery")
    try:
        assert rebuilt.fingerprint == Bundle(second_bundle, device="cpu").fingerprint
        assert sorted(i.image_id for i in rebuilt.items()) == ["u0", "u1", "u2"]
    finally:
        rebuilt.close()
