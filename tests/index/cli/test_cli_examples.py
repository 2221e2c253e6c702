"""``python -m index search`` by example: --positive, --negative, --image, --alpha, --beta."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from index.cli.commands import main
from index.search.query_vector import combine
from index.store import GalleryIndex


def run(capsys: pytest.CaptureFixture, *args: object) -> tuple[int, object, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, (json.loads(out) if code == 0 else None), err


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, synthetic_root: Path, random_bundle: Path):
    """An index of three people's images, person = folder."""
    folder = tmp_path_factory.mktemp("camera")
    for person in ("p0001", "p0002", "p0003"):
        shutil.copytree(synthetic_root / "imgs" / person, folder / person)
    out = tmp_path_factory.mktemp("idx") / "index"
    args = ["-q", "build", "--bundle", random_bundle, "--images", folder, "--person-from-dir"]
    assert main([str(a) for a in [*args, "--out", out, "--workers", "0", "--device", "cpu"]]) == 0
    return out, folder


def test_search_by_positive_examples_leaves_them_out(
    capsys: pytest.CaptureFixture, built, random_bundle: Path
) -> None:
    index, _ = built
    base = ("search", index, "--bundle", random_bundle, "--device", "cpu", "-k", "3")
    code, hits, err = run(capsys, *base, "--positive", "p0001/p0001_01.jpg")
    assert code == 0, err
    assert len(hits) == 3 and "p0001/p0001_01.jpg" not in [h["image_id"] for h in hits]
    code, kept, _ = run(capsys, *base, "--positive", "p0001/p0001_01.jpg", "--keep-examples")
    assert kept[0]["image_id"] == "p0001/p0001_01.jpg" and kept[0]["score"] > 0.999


def test_scores_follow_the_shared_combination(
    capsys: pytest.CaptureFixture, built, random_bundle: Path
) -> None:
    from bundle.encoders import Bundle

    index, _ = built
    pos, neg = "p0002/p0002_02.jpg", "p0003/p0003_01.jpg"
    code, hits, err = run(
        capsys, "search", index, "--bundle", random_bundle, "--device", "cpu",
        "--query", "a woman", "-k", "9",
        "--positive", pos, "--negative", neg, "--alpha", "0.5", "--beta", "0.7",
    )  # fmt: skip
    assert code == 0, err
    bundle = Bundle(random_bundle)
    with GalleryIndex.open(index, bundle.fingerprint, bundle.dim, "never") as store:
        v = store.vectors([pos, neg, *[h["image_id"] for h in hits]])
    q = combine(bundle.encode_text(["a woman"])[0], v[pos][None], v[neg][None], 0.5, 0.7)
    for hit in hits:
        assert hit["score"] == pytest.approx(float(v[hit["image_id"]] @ q), abs=1e-5)
    assert {pos, neg}.isdisjoint(h["image_id"] for h in hits)


def test_search_by_a_photo(capsys: pytest.CaptureFixture, built, random_bundle: Path) -> None:
    index, folder = built
    photo = folder / "p0002" / "p0002_03.jpg"
    code, hits, err = run(
        capsys, "search", index, "--bundle", random_bundle, "--device", "cpu", "--image", photo
    )
    assert code == 0, err
    assert hits[0]["image_id"] == "p0002/p0002_03.jpg" and hits[0]["score"] > 0.999


@pytest.mark.parametrize(
    ("extra", "says"),
    [
        ((), "nothing to search for"),
        (("--query", " "), "--query is empty"),
        (("--negative", "p0001/p0001_01.jpg"), "nothing to search for"),
        (("--positive", "nope", "--positive", "p0001/p0001_01.jpg"), "not in the index: nope"),
        (("--positive", "a", "--negative", "a"), "both --positive and --negative: a"),
        (("--query", "x", "--alpha", "-1"), "--alpha/--beta"),
        (("--image", "/no/such.jpg"), "no such file"),
    ],
)
def test_bad_example_searches_are_one_line(
    capsys: pytest.CaptureFixture, built, random_bundle: Path, extra: tuple, says: str
) -> None:
    index, _ = built
    code, _, err = run(
        capsys, "search", index, "--bundle", random_bundle, "--device", "cpu", *extra
    )
    assert code == 2
    assert err.strip().splitlines()[-1].startswith("error:") and says in err


def test_a_file_that_is_not_an_image(
    capsys: pytest.CaptureFixture, built, random_bundle: Path, tmp_path: Path
) -> None:
    index, _ = built
    bad = tmp_path / "notes.jpg"
    bad.write_text("not an image")
    code, _, err = run(
        capsys, "search", index, "--bundle", random_bundle, "--device", "cpu", "--image", bad
    )
    assert code == 2 and "--image" in err
