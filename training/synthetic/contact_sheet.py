"""A contact sheet of a CUHK-PEDES-style data set: images with their captions, for eyeballing.

    python -m training.synthetic.contact_sheet --root data/synth --out sheet.png --n 24 --split test

Each cell is one image scaled to ``THUMB_H`` pixels high with its captions wrapped beside it.
"""

from __future__ import annotations

import json
import math
import random
import sys
from collections.abc import Sequence
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from bundle.cli import OneLineParser, run_command

THUMB_H = 384
TEXT_W = 240
PAD = 8
FONT_SIZE = 12
LINE_H = 15
BACKGROUND = (250, 250, 248)
INK = (20, 20, 20)
MUTED = (110, 110, 110)


def cell_size(image_size: tuple[int, int]) -> tuple[int, int]:
    """(width, height) of one cell for images of (height, width) ``image_size``."""
    h, w = image_size
    thumb_w = max(1, round(w * THUMB_H / h))
    return PAD + thumb_w + PAD + TEXT_W + PAD, PAD + THUMB_H + PAD


def _wrap(text: str, font: ImageFont.ImageFont | ImageFont.FreeTypeFont, width: int) -> list[str]:
    lines: list[str] = []
    line = ""
    for word in text.split():
        candidate = f"{line} {word}".strip()
        if line and font.getlength(candidate) > width:
            lines.append(line)
            line = word
        else:
            line = candidate
    return [*lines, line] if line else lines


def _load_entries(root: Path, split: str) -> list[dict]:
    path = root / "reid_raw.json"
    try:
        entries = json.loads(path.read_text())
    except FileNotFoundError:
        raise ValueError(f"{path} does not exist") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not valid JSON: {exc}") from None
    chosen = [e for e in entries if e.get("split") == split]
    if not chosen:
        raise ValueError(f"{path} has no entries in split {split!r}")
    return chosen


def _views(root: Path) -> dict[str, str]:
    """file_path -> view, when the data set came with attributes.json (synthetic sets do)."""
    path = root / "attributes.json"
    if not path.is_file():
        return {}
    people = json.loads(path.read_text())
    return {img["file_path"]: img["view"] for p in people.values() for img in p.get("images", [])}


def make_contact_sheet(
    root: Path, out: Path, n: int = 24, split: str = "test", seed: int = 0, cols: int = 4
) -> tuple[int, int]:
    """Write a PNG grid of ``n`` random images of ``split`` with captions; returns its size.

    Cells are ``cell_size`` of the first chosen image; fewer images are shown if the split is
    smaller than ``n``. Raises ValueError on a missing or empty data set.
    """
    if n < 1 or cols < 1:
        raise ValueError("n and cols must be at least 1")
    root, out = Path(root), Path(out)
    entries = _load_entries(root, split)
    picked = sorted(
        random.Random(seed).sample(entries, min(n, len(entries))),
        key=lambda e: (e["id"], e["file_path"]),
    )
    views = _views(root)
    images = []
    for e in picked:
        with Image.open(root / "imgs" / e["file_path"]) as img:
            images.append(img.convert("RGB"))
    first = images[0]
    cw, ch = cell_size((first.height, first.width))
    cols = min(cols, len(picked))
    rows = math.ceil(len(picked) / cols)
    sheet = Image.new("RGB", (cols * cw, rows * ch), BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default(size=FONT_SIZE)
    thumb_w = cw - TEXT_W - 3 * PAD
    for k, (entry, img) in enumerate(zip(picked, images, strict=True)):
        x, y = (k % cols) * cw, (k // cols) * ch
        sheet.paste(img.resize((thumb_w, THUMB_H), Image.Resampling.BILINEAR), (x + PAD, y + PAD))
        tx, ty = x + PAD + thumb_w + PAD, y + PAD
        view = views.get(entry["file_path"])
        header = f"id {entry['id']} - {entry['file_path']}" + (f" - {view}" if view else "")
        draw.text((tx, ty), header, fill=MUTED, font=font)
        ty += LINE_H + 4
        for i, caption in enumerate(entry["captions"], 1):
            for line in _wrap(f"{i}. {caption}", font, TEXT_W):
                if ty + LINE_H > y + ch - PAD:
                    break
                draw.text((tx, ty), line, fill=INK, font=font)
                ty += LINE_H
            ty += 6
        draw.line([(x, y + ch - 1), (x + cw, y + ch - 1)], fill=(215, 215, 215))
    out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out, "PNG")
    return sheet.size


def main(argv: Sequence[str] | None = None) -> int:
    parser = OneLineParser(
        prog="python -m training.synthetic.contact_sheet", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--root", type=Path, required=True, help="data set directory")
    parser.add_argument("--out", type=Path, required=True, help="PNG to write")
    parser.add_argument("--n", type=int, default=24, help="number of images")
    parser.add_argument("--split", default="test", choices=("train", "val", "test"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cols", type=int, default=4)
    args = parser.parse_args(argv)

    def run() -> int:
        size = make_contact_sheet(args.root, args.out, args.n, args.split, args.seed, args.cols)
        print(f"wrote {args.out} ({size[0]}x{size[1]})")
        return 0

    return run_command(run, (ValueError, OSError))


if __name__ == "__main__":
    sys.exit(main())
