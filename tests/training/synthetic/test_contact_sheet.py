"""The contact sheet: a decodable PNG grid of images with their captions."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from PIL import Image

from training.synthetic import generate
from training.synthetic.contact_sheet import cell_size, main, make_contact_sheet


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synth")
    generate(out, ids=12, images_per_id=3, seed=5)
    return out


@pytest.mark.parametrize(("n", "cols"), [(5, 2), (4, 4), (1, 3)])
def test_sheet_is_a_png_grid_of_the_expected_size(root, tmp_path, n, cols):
    out = tmp_path / "sheet.png"
    size = make_contact_sheet(root, out, n=n, split="train", seed=0, cols=cols)
    cw, ch = cell_size((384, 128))
    used_cols = min(cols, n)
    expected = (used_cols * cw, math.ceil(n / used_cols) * ch)
    assert size == expected
    with Image.open(out) as img:
        assert img.format == "PNG"
        assert img.size == expected
        img.load()
        # Thumbnails and text make the sheet far from a blank page.
        assert len(img.convert("L").getcolors(256) or []) > 50


def test_a_small_split_shows_all_of_its_images(root, tmp_path):
    # 12 ids with the default fractions leave one identity (3 images) for validation.
    size = make_contact_sheet(root, tmp_path / "val.png", n=24, split="val", seed=0, cols=4)
    cw, ch = cell_size((384, 128))
    assert size == (3 * cw, ch)


def test_same_seed_same_sheet(root, tmp_path):
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    make_contact_sheet(root, a, n=6, split="test", seed=1)
    make_contact_sheet(root, b, n=6, split="test", seed=1)
    assert a.read_bytes() == b.read_bytes()


def test_cli_writes_the_sheet(root, tmp_path, capsys):
    out = tmp_path / "cli.png"
    assert main(["--root", str(root), "--out", str(out), "--n", "4"]) == 0
    assert out.is_file()
    assert "cli.png" in capsys.readouterr().out


@pytest.mark.parametrize(
    "args",
    [
        ["--root", "missing-dir"],
        ["--n", "0"],
        ["--split", "nope"],
    ],
)
def test_cli_rejects_bad_input_in_one_line(root, tmp_path, capsys, args):
    full = {"--root": str(root), "--out": str(tmp_path / "s.png")}
    full.update(dict(zip(args[::2], args[1::2], strict=True)))
    try:  # a bad flag stops in argparse, a bad value in the command: both one line, exit 2
        code = main([part for pair in full.items() for part in pair])
    except SystemExit as exc:
        code = exc.code
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "error" in err
    assert not (tmp_path / "s.png").exists()
