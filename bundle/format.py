"""The inference bundle's on-disk format: writing, reading, fingerprint and version.

A bundle is an open_clip ``local-dir`` model folder plus our metadata, so
``open_clip.create_model_and_transforms("local-dir:BUNDLE")`` loads it with open_clip alone:

    BUNDLE/open_clip_config.json       {"model_cfg": ..., "preprocess_cfg": ...}
    BUNDLE/open_clip_model.safetensors the two towers (no training-only heads)
    BUNDLE/bundle.json                 format version, fingerprint, recipe, validation metrics
    BUNDLE/parts_head.safetensors      only in a parts bundle: the part-level head (docs/parts.md),
                                       its config and default weights under "parts" in bundle.json

The fingerprint is the sha256 of the towers' weights file; a parts bundle's also covers the
head's file and its config, so an index built in either mode names the bundle exactly.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bundle.fsio import temp_dir, write_json_atomic

if TYPE_CHECKING:
    import torch

BUNDLE_FORMAT = "tps-bundle"
BUNDLE_VERSION = 1
CONFIG_FILE = "open_clip_config.json"
WEIGHTS_FILE = "open_clip_model.safetensors"
META_FILE = "bundle.json"
PARTS_FILE = "parts_head.safetensors"


class BundleError(Exception):
    """A bundle is missing, incomplete, or does not match what is asked of it."""


@dataclass(frozen=True)
class BundleMeta:
    fingerprint: str
    embed_dim: int
    image_size: tuple[int, int]
    context_length: int
    model_name: str
    extra: dict[str, Any] = field(default_factory=dict)


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def parts_fingerprint(weights_sha: str, head_sha: str, parts: dict[str, Any]) -> str:
    """A parts bundle's fingerprint: the towers, the head and the head's config together."""
    canonical = json.dumps(parts, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(f"{weights_sha}\n{head_sha}\n{canonical}".encode()).hexdigest()


def compute_fingerprint(bundle_dir: Path, meta: BundleMeta | None = None) -> str:
    """The fingerprint the bundle's files give now (compare with the recorded one)."""
    bundle_dir = Path(bundle_dir)
    weights_sha = sha256_file(bundle_dir / WEIGHTS_FILE)
    parts = (meta or read_meta(bundle_dir)).extra.get("parts")
    if parts is None:
        return weights_sha
    return parts_fingerprint(weights_sha, sha256_file(bundle_dir / PARTS_FILE), parts)


def verify_fingerprint(bundle_dir: Path, meta: BundleMeta) -> None:
    """Refuse a bundle whose files no longer give the fingerprint ``meta`` records."""
    if compute_fingerprint(bundle_dir, meta) != meta.fingerprint:
        raise BundleError(f"{bundle_dir}: weights do not match the fingerprint in {META_FILE}")


def preprocess_cfg(
    image_size: tuple[int, int],
    mean: list[float],
    std: list[float],
    interpolation: str = "bicubic",
) -> dict:
    """Eval preprocessing: squash-resize to H×W (pedestrian crops are already tall), normalise;
    ``interpolation`` is the one the towers were trained with."""
    return {
        "size": list(image_size),
        "mode": "RGB",
        "mean": list(mean),
        "std": list(std),
        "interpolation": interpolation,
        "resize_mode": "squash",
    }


def write_bundle(
    out_dir: Path,
    state_dict: dict[str, torch.Tensor],
    model_cfg: dict,
    preprocess: dict,
    model_name: str,
    extra: dict[str, Any] | None = None,
    parts: tuple[dict[str, torch.Tensor], dict[str, Any]] | None = None,
) -> BundleMeta:
    """Write the towers' weights, their open_clip config and our metadata; return the metadata.

    ``parts``: (the part head's state dict, its config) to make a parts bundle.

    Files are written to a sibling temp folder and renamed into place, so a reader never sees a
    bundle whose weights and fingerprint disagree.
    """
    import torch
    from safetensors.torch import save_file

    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp_dir = temp_dir(out_dir.parent, prefix=f".{out_dir.name}.")
    tensors = {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in state_dict.items()}
    save_file(tensors, str(tmp_dir / WEIGHTS_FILE))
    fingerprint = sha256_file(tmp_dir / WEIGHTS_FILE)
    extra = dict(extra or {})
    if parts is not None:
        head_state, parts_meta = parts
        head = {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in head_state.items()}
        save_file(head, str(tmp_dir / PARTS_FILE))
        extra["parts"] = parts_meta
        fingerprint = parts_fingerprint(fingerprint, sha256_file(tmp_dir / PARTS_FILE), parts_meta)
    write_json_atomic(tmp_dir / CONFIG_FILE, {"model_cfg": model_cfg, "preprocess_cfg": preprocess})
    image_size = tuple(int(s) for s in preprocess["size"])
    meta = {
        "format": BUNDLE_FORMAT,
        "version": BUNDLE_VERSION,
        "fingerprint": fingerprint,
        "embed_dim": int(model_cfg["embed_dim"]),
        "image_size": list(image_size),
        "context_length": int(model_cfg["text_cfg"].get("context_length", 77)),
        "model_name": model_name,
        **extra,
    }
    write_json_atomic(tmp_dir / META_FILE, meta)
    if out_dir.exists():
        old = out_dir.with_name(f".{out_dir.name}.old")
        if old.exists():
            shutil.rmtree(old)
        os.replace(out_dir, old)
        os.replace(tmp_dir, out_dir)
        shutil.rmtree(old)
    else:
        os.replace(tmp_dir, out_dir)
    return read_meta(out_dir)


def read_meta(bundle_dir: Path) -> BundleMeta:
    bundle_dir = Path(bundle_dir)
    for name in (CONFIG_FILE, WEIGHTS_FILE, META_FILE):
        if not (bundle_dir / name).is_file():
            raise BundleError(f"{bundle_dir} is not a bundle: {name} is missing")
    try:
        meta = json.loads((bundle_dir / META_FILE).read_text())
    except json.JSONDecodeError as err:
        raise BundleError(f"{bundle_dir / META_FILE} is not valid JSON: {err}") from err
    if meta.get("format") != BUNDLE_FORMAT or meta.get("version") != BUNDLE_VERSION:
        raise BundleError(
            f"{bundle_dir} has format {meta.get('format')!r} v{meta.get('version')}, "
            f"expected {BUNDLE_FORMAT!r} v{BUNDLE_VERSION}"
        )
    if "parts" in meta and not (bundle_dir / PARTS_FILE).is_file():
        raise BundleError(f"{bundle_dir} is a parts bundle but {PARTS_FILE} is missing")
    known = {"fingerprint", "embed_dim", "image_size", "context_length", "model_name"}
    return BundleMeta(
        fingerprint=meta["fingerprint"],
        embed_dim=int(meta["embed_dim"]),
        image_size=tuple(meta["image_size"]),
        context_length=int(meta["context_length"]),
        model_name=meta["model_name"],
        extra={k: v for k, v in meta.items() if k not in known},
    )
