"""Synthetic footage with ground truth: the synthetic set's people walking across a street
scene (crossings, a pillar in front of them, scale change as they come closer), written as an
MP4 with PyAV, with their true boxes and identities per frame in the MOT challenge format.

Layout of a sequence folder: ``video.mp4``, ``gt/gt.txt`` (``frame,id,x,y,w,h,1,1,visibility``,
frames from 1), ``people.json`` (id → captions of that person) and ``seqinfo.json``.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
from PIL import Image

from training.synthetic.attributes import COLOURS, Identity, sample_identities
from training.synthetic.captions import make_captions
from training.synthetic.render import (
    Variation,
    _background,
    _Canvas,
    _Figure,
    sample_variation,
)

_KEYS = ((255, 0, 255), (0, 255, 0))


@dataclass(frozen=True)
class Walker:
    pid: int
    identity: Identity
    view: str  # front | back | side, as the renderer draws it
    direction: int  # +1 walks screen-right
    x0: float  # centre x at frame 0, fraction of the width
    speed: float  # fraction of the width per frame
    feet: float  # y of the feet at frame 0, fraction of the height
    height0: float  # figure height at frame 0, fraction of the frame height
    height1: float  # at the last frame
    enter: int  # first frame
    sprites: tuple[tuple[np.ndarray, np.ndarray], ...]  # (rgb, mask) per stride phase


def _sprite(identity: Identity, variation: Variation, height: int) -> tuple[np.ndarray, np.ndarray]:
    """The figure alone (RGB) and where it is (mask): drawn on two key colours, kept where they
    agree."""
    width = int(height * 0.7)
    layers = []
    for key in _KEYS:
        img = Image.new("RGB", (width, height), key)
        rng = random.Random(variation.seed)
        _Figure(
            _Canvas(img, width / 2, height * 0.02, height * 0.96), identity, variation, rng
        ).draw()
        layers.append(np.asarray(img))
    mask = np.all(layers[0] == layers[1], axis=2)
    return layers[0], mask


def _walker(rng: random.Random, pid: int, identity: Identity, frames: int, n: int) -> Walker:
    direction = 1 if n % 2 == 0 else -1
    base = sample_variation(rng, identity)
    # Most people seen walking past a camera face it or turn from it at an angle; a third are
    # drawn side on (the hardest for a detector trained on upright, mostly frontal people).
    view = rng.choices(("front", "back", "side"), weights=(0.4, 0.3, 0.3))[0]
    sprites = []
    for stride in (4.0, 14.0, 22.0, 14.0):
        var = Variation(
            view=view,
            facing=direction,
            scale=1.0,
            x_shift=0.0,
            y_place=0.0,
            arm_angles=(12.0, 12.0),
            elbow_bend=10.0,
            stride=stride,
            occluder="none",
            occluder_side=1,
            downscale=1.0,
            jpeg_quality=95,
            gain=(1.0, 1.0, 1.0),
            noise=0.0,
            seed=base.seed,
        )
        sprites.append(_sprite(identity, var, 400))
    near = rng.random() < 0.5
    h0 = rng.uniform(0.42, 0.55)
    h1 = h0 * (rng.uniform(1.15, 1.35) if near else rng.uniform(0.8, 0.95))
    travel = rng.uniform(0.7, 1.0)
    return Walker(
        pid=pid,
        identity=identity,
        view=view,
        direction=direction,
        x0=0.1 if direction > 0 else 0.9,
        speed=travel / frames,
        feet=rng.uniform(0.72, 0.95),
        height0=h0,
        height1=h1,
        enter=rng.randint(0, frames // 6),
        sprites=tuple(sprites),
    )


def people_of(seed: int, people: int) -> list[Identity]:
    """The people ``make_footage(seed=seed, people=people)`` draws (pids 1..people)."""
    return sample_identities(random.Random(seed), people, group_sizes=(1, 1))


def distinct_people(count: int, seed: int) -> list[Identity]:
    """``count`` people (pids 1..count) of whom no two share a top colour or a bottom colour:
    people a small model trained on them can tell apart."""
    if count > len(COLOURS):
        raise ValueError(f"at most {len(COLOURS)} people differ in every colour, not {count}")
    rng = random.Random(seed)
    while True:
        people = sample_identities(rng, count, group_sizes=(1, 1))
        if len({p.upper_colour for p in people}) == len({p.lower_colour for p in people}) == count:
            return people


def _paste(frame: np.ndarray, sprite: tuple[np.ndarray, np.ndarray], box: tuple[int, ...]) -> None:
    rgb, mask = sprite
    x, y, w, h = box
    small = np.asarray(Image.fromarray(rgb).resize((w, h), Image.Resampling.BILINEAR))
    keep = np.asarray(Image.fromarray(mask.astype(np.uint8) * 255).resize((w, h))) > 127
    H, W = frame.shape[:2]
    x1, y1, x2, y2 = max(0, x), max(0, y), min(W, x + w), min(H, y + h)
    if x2 <= x1 or y2 <= y1:
        return
    sub = keep[y1 - y : y2 - y, x1 - x : x2 - x]
    frame[y1:y2, x1:x2][sub] = small[y1 - y : y2 - y, x1 - x : x2 - x][sub]


def make_footage(
    out: Path,
    people: int = 4,
    frames: int = 60,
    fps: int = 10,
    size: tuple[int, int] = (360, 640),
    seed: int = 0,
    pillar: bool = True,
    cast: list[Identity] | None = None,
) -> Path:
    """One sequence folder under ``out``; returns it. ``size`` is (height, width), even. A
    finished folder (its seqinfo.json, written last) is returned as it is. ``cast``: these
    people (the first ``people`` of them) instead of sampled ones."""
    out = Path(out)
    if (out / "seqinfo.json").is_file():
        return out
    (out / "gt").mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    H, W = size
    identities = list(cast[:people]) if cast else sample_identities(rng, people, (1, 1))
    walkers = [_walker(rng, n + 1, who, frames, n) for n, who in enumerate(identities)]
    background = np.asarray(_background(size, rng)).copy()
    pillar_box = (int(W * 0.47), 0, int(W * 0.05), H) if pillar else None
    rows: list[str] = []
    with av.open(str(out / "video.mp4"), "w") as container:
        stream = container.add_stream("libx264", rate=fps, options={"crf": "18", "preset": "fast"})
        stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
        for f in range(frames):
            frame = background.copy()
            boxes = []
            # Farther people (higher feet) are drawn first, nearer ones over them.
            for walker in sorted(walkers, key=lambda w: w.feet):
                if f < walker.enter:
                    continue
                t = (f - walker.enter) / max(1, frames - 1)
                hf = (walker.height0 + (walker.height1 - walker.height0) * t) * H
                cx = (walker.x0 + walker.direction * walker.speed * (f - walker.enter)) * W
                h, w = int(hf), int(hf * 0.7)
                box = (int(cx - w / 2), int(walker.feet * H - hf), w, h)
                _paste(frame, walker.sprites[(f // 2) % len(walker.sprites)], box)
                boxes.append((walker.pid, box, walker.sprites[0][1]))
            if pillar_box is not None:
                px, py, pw, ph = pillar_box
                frame[py : py + ph, px : px + pw] = (90, 90, 96)
            rows.extend(_truth_rows(f + 1, boxes, frame.shape, pillar_box))
            image = av.VideoFrame.from_ndarray(frame, format="rgb24")
            container.mux(stream.encode(image))
        container.mux(stream.encode())
    (out / "gt" / "gt.txt").write_text("".join(rows))
    captions = {
        w.pid: make_captions(w.identity, w.view, random.Random(seed * 1000 + w.pid), count=2)
        for w in walkers
    }
    (out / "people.json").write_text(json.dumps(captions, indent=2))
    (out / "seqinfo.json").write_text(
        json.dumps({"frames": frames, "fps": fps, "width": W, "height": H, "people": people})
    )
    return out


def _truth_rows(
    frame: int, boxes: list, shape: tuple[int, ...], pillar: tuple[int, int, int, int] | None
) -> list[str]:
    """MOT rows of the people in the frame: the box of their visible extent in the frame, and
    the fraction of them that is visible (not cut by the edge, the pillar or a nearer person)."""
    H, W = shape[:2]
    cover = np.zeros((H, W), np.int32)  # pid of the front-most person per pixel
    masks = {}
    for pid, (x, y, w, h), mask in boxes:
        full = np.zeros((H, W), bool)
        keep = np.asarray(Image.fromarray(mask.astype(np.uint8) * 255).resize((w, h))) > 127
        x1, y1, x2, y2 = max(0, x), max(0, y), min(W, x + w), min(H, y + h)
        if x2 > x1 and y2 > y1:
            full[y1:y2, x1:x2] = keep[y1 - y : y2 - y, x1 - x : x2 - x]
        cover[full] = pid
        masks[pid] = (full, int(keep.sum()))
    if pillar is not None:
        px, py, pw, ph = pillar
        cover[py : py + ph, px : px + pw] = 0
    rows = []
    for pid, (full, total) in masks.items():
        seen = full & (cover == pid)
        if not full.any() or total == 0:
            continue
        ys, xs = np.nonzero(full)
        visibility = float(seen.sum()) / total
        x1, y1, x2, y2 = xs.min(), ys.min(), xs.max() + 1, ys.max() + 1
        rows.append(f"{frame},{pid},{x1},{y1},{x2 - x1},{y2 - y1},1,1,{visibility:.3f}\n")
    return rows


def track_owner(truth: dict[int, list], crops: list[dict], min_iou: float = 0.5) -> int | None:
    """The person most of a track's crops show: each crop (``frame`` from 0 and ``box``, as in
    a footage job's manifest) votes for the true person its box overlaps most, at IoU >=
    ``min_iou``; None when no crop matches anyone."""
    from footage.boxes import iou_matrix

    votes: Counter[int] = Counter()
    for crop in crops:
        people = truth.get(crop["frame"] + 1, [])
        if people:
            boxes = np.stack([b for _, b, _ in people])
            iou = iou_matrix(np.array([crop["box"]], np.float32), boxes)[0]
            if iou.max() >= min_iou:
                votes[people[int(iou.argmax())][0]] += 1
    return votes.most_common(1)[0][0] if votes else None


def read_truth(path: Path) -> dict[int, list[tuple[int, np.ndarray, float]]]:
    """gt.txt → frame (from 1) → [(id, x1 y1 x2 y2, visibility)]."""
    out: dict[int, list[tuple[int, np.ndarray, float]]] = {}
    for line in Path(path).read_text().splitlines():
        f, pid, x, y, w, h, _, _, vis = line.split(",")
        box = np.array([float(x), float(y), float(x) + float(w), float(y) + float(h)], np.float32)
        out.setdefault(int(f), []).append((int(pid), box, float(vis)))
    return out


def hostile_recordings(source: Path, out: Path) -> dict[str, Path]:
    """Files a recording check must refuse, made from the recording ``source`` (320x240, as
    the tests' tiny one): name → file. Each is made once; a finished folder is returned."""
    out = Path(out)
    made = {
        "not-a-video": out / "notes.mp4",
        "truncated": out / "cut.mp4",  # the index at the end is gone
        "truncated-faststart": out / "cut-faststart.mp4",  # index first, declares lost frames
        "huge-frames": out / "huge.mp4",  # 6400x6400: over the 8K limit
        "no-frames": out / "empty.mp4",  # a header and no frame: no video stream is written
    }
    if all(p.is_file() for p in made.values()):
        return made
    out.mkdir(parents=True, exist_ok=True)
    made["not-a-video"].write_text("not a video at all")
    data = Path(source).read_bytes()
    made["truncated"].write_bytes(data[: len(data) // 2])
    whole = out / "whole-faststart.mp4"
    with (
        av.open(str(source)) as src,
        av.open(str(whole), "w", options={"movflags": "faststart"}) as dst,
    ):
        stream = dst.add_stream("libx264", rate=8)
        stream.width, stream.height, stream.pix_fmt = 320, 240, "yuv420p"
        for frame in src.decode(video=0):
            rgb = frame.to_ndarray(format="rgb24")
            dst.mux(stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")))
        dst.mux(stream.encode())
    data = whole.read_bytes()
    made["truncated-faststart"].write_bytes(data[: len(data) * 6 // 10])
    with av.open(str(made["huge-frames"]), "w") as container:
        stream = container.add_stream("libx264", rate=1, options={"preset": "ultrafast"})
        stream.width, stream.height, stream.pix_fmt = 6400, 6400, "yuv420p"
        frame = av.VideoFrame(6400, 6400, "yuv420p")
        for plane in frame.planes:
            plane.update(bytes(plane.buffer_size))
        container.mux(stream.encode(frame))
        container.mux(stream.encode())
    with av.open(str(made["no-frames"]), "w") as container:
        stream = container.add_stream("libx264", rate=8)
        stream.width, stream.height, stream.pix_fmt = 64, 64, "yuv420p"
        container.start_encoding()
    return made
