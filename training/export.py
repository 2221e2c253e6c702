"""Checkpoint → inference bundle: the two towers only, with config, preprocessing and metadata.

``export_onnx_towers`` adds the towers as ONNX graphs (bundle/onnx_export.py) and, on request,
the INT8 text tower, whose rankings are checked on the test split of the bundle's own data set
(``--check-root``; a synthetic set, which only training can generate, only for bundles of the
synthetic set or untrained ones: the bundle package knows no data set).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence
from pathlib import Path

import torch

from bundle.format import preprocess_cfg, write_bundle
from bundle.openclip_import import import_open_clip
from bundle.parts_encoder import parts_config
from bundle.parts_head import PartsHead
from training.checkpoint import load_checkpoint
from training.model.activation import Activation
from training.model.towers import TowerSpec, build_towers, build_towers_with_report

log = logging.getLogger(__name__)

# Identities of the synthetic set the INT8 check ranks on: 100 test persons, 200 images.
CHECK_IDS = 250
# The file the synthetic generator writes beside reid_raw.json (training/synthetic/generate.py).
SYNTHETIC_MARKER = "attributes.json"


def write_towers(
    clip: torch.nn.Module,
    model_cfg: dict,
    spec: TowerSpec,
    out_dir: Path,
    extra: dict,
    parts: PartsHead | None = None,
    interpolation: str = "bicubic",
) -> Path:
    """Write open_clip towers as a bundle with the OpenAI normalisation and the resize
    ``interpolation`` the recipe trains with; with ``parts`` a parts bundle that also carries
    the part head (never its classifiers).

    ``spec`` has its activation resolved: the bundle records it and why under ``activation``."""
    open_clip = import_open_clip()
    activation = Activation(bool(model_cfg.get("quick_gelu", False)), spec.quick_gelu_source or "")
    extra = {**extra, "activation": activation.record()}
    write_bundle(
        out_dir,
        clip.state_dict(),
        model_cfg,
        preprocess_cfg(
            spec.resolved_image_size(),
            list(open_clip.OPENAI_DATASET_MEAN),
            list(open_clip.OPENAI_DATASET_STD),
            interpolation,
        ),
        model_name=spec.model,
        extra=extra,
        parts=None if parts is None else (parts.state_dict(), parts_config(parts)),
    )
    return Path(out_dir)


def export_untrained(
    out_dir: Path, model: str = "tiny", seed: int = 0, parts: dict | None = None
) -> Path:
    """A randomly initialised bundle: the untrained baseline, and a fixture for tests.

    ``parts``: PartsHead keyword arguments (width, embed_dim, coarse_tokens, stripes, …) to make
    it a parts bundle with a random head."""
    torch.manual_seed(seed)
    towers = build_towers_with_report(TowerSpec(model))
    clip, model_cfg, spec = towers.model, towers.model_cfg, towers.spec
    head = None
    if parts is not None:
        grid = tuple(int(g) for g in clip.visual.grid_size)
        head = PartsHead(clip.visual.transformer.width, clip.transformer.width, grid, **parts)
    extra = {"selected_on": "untrained", "losses": []}
    return write_towers(clip, model_cfg, spec, out_dir, extra, head)


def export_bundle(
    checkpoint: Path,
    out_dir: Path,
    selected_on: str | None = None,
    parts: bool | None = None,
    int8_check_root_given: bool = True,
) -> Path:
    """Write ``out_dir`` from a training checkpoint (``best.pt`` or ``last.pt``) and return it.

    ``parts``: carry the part head (default: the run's ``parts_export``); the checkpoint must
    come from a run with the parts loss. ``int8_check_root_given=False`` (an INT8 export will
    follow without --check-root) refuses a non-synthetic run before anything is written."""
    state = load_checkpoint(checkpoint)
    if not int8_check_root_given:
        require_check_root({"recipe": state["config"]})
    spec_fields = dict(state["spec"])
    spec_fields["pretrained"] = "none"  # the checkpoint holds the weights; nothing to download
    if spec_fields.get("image_size") is not None:
        spec_fields["image_size"] = tuple(spec_fields["image_size"])
    if spec_fields.get("quick_gelu") is None:
        # Runs before the activation was resolved into the spec: their model config holds it.
        spec_fields["quick_gelu"] = bool(state["model_cfg"].get("quick_gelu", False))
        spec_fields["quick_gelu_source"] = "the training run's model config"
    spec = TowerSpec(**spec_fields)
    clip, _ = build_towers(spec)
    towers = {k[len("clip.") :]: v for k, v in state["model"].items() if k.startswith("clip.")}
    clip.load_state_dict(towers)
    config = state["config"]
    extra = {
        "recipe": config,
        "losses": config["losses"],
        "pretrained": state["spec"]["pretrained"],
        "val_metrics": state.get("val_metrics"),
        "selected_on": selected_on or "given checkpoint",
        # Published numbers often select on test; a bundle that did says so where it is read.
        "selected_on_test": bool(
            selected_on and config.get("val_split") == "test" and not config.get("val_from_train")
        ),
        "epoch": state["epoch"],
        "step": state["step"],
        "exported_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    head = None
    if config.get("parts_export", False) if parts is None else parts:
        head = _parts_head(config, state["model"], clip)
    interpolation = config.get("resize_interpolation", "bicubic")
    return write_towers(clip, state["model_cfg"], spec, out_dir, extra, head, interpolation)


def _parts_head(config: dict, model_state: dict, clip: torch.nn.Module) -> PartsHead:
    """The trained part head of a checkpoint, rebuilt from the run's config."""
    weights = {k[len("parts.") :]: v for k, v in model_state.items() if k.startswith("parts.")}
    if not weights:
        raise ValueError("the checkpoint has no part head: train with the parts loss to export it")
    head = PartsHead(
        clip.visual.transformer.width,
        clip.transformer.width,
        tuple(int(g) for g in clip.visual.grid_size),
        width=config["parts_width"],
        embed_dim=config["parts_dim"],
        coarse_tokens=config["parts_tokens"],
        stripes=config["parts_stripes"],
        pool=config["parts_pool"],
    )
    head.load_state_dict(weights)
    return head


def is_synthetic_bundle(extra: dict) -> bool:
    """Whether a bundle's own data set is the synthetic one: untrained weights (no data set of
    their own), or a recipe whose data folder holds the generator's ``attributes.json`` beside
    its ``reid_raw.json`` (a real CUHK-PEDES folder has no such file)."""
    if extra.get("selected_on") == "untrained":
        return True
    recipe = extra.get("recipe") or {}
    root = Path(str(recipe.get("root", "")))
    return bool(recipe.get("root")) and (
        (root / SYNTHETIC_MARKER).is_file() and (root / "reid_raw.json").is_file()
    )


def require_check_root(extra: dict) -> None:
    """Refuse the synthetic check set for a bundle (its bundle.json extras) of another data set."""
    if is_synthetic_bundle(extra):
        return
    recipe = extra.get("recipe") or {}
    dataset = str(recipe.get("dataset", "cuhk-pedes"))
    trained_on = f"{dataset} at {recipe['root']}" if recipe.get("root") else "a data set"
    raise ValueError(
        f"the INT8 check needs --check-root: this bundle was trained on {trained_on}, not on "
        "the synthetic set; give that data set's folder (its test split is ranked)"
    )


def check_set(
    root: Path | None, work: Path, extra: dict | None = None
) -> tuple[list[str], list[Path]]:
    """(captions, image paths) of the test split the INT8 check ranks: ``root``'s, read in the
    format of the bundle's own data set (``extra``: its bundle.json extras), or, only for a
    synthetic bundle, a synthetic set generated into ``work`` (seeded, so every export checks
    against the same set). A bundle trained on another data set needs ``root``: how INT8 ranks
    synthetic captions says nothing about how it ranks that set's."""
    from training.data.formats import load_records
    from training.synthetic import generate

    extra = extra or {}
    recipe = extra.get("recipe") or {}
    dataset = str(recipe.get("dataset", "cuhk-pedes"))
    if root is None:
        require_check_root(extra)
        root = work / "synthetic"
        generate(root, ids=CHECK_IDS, images_per_id=2, seed=0, val_fraction=0.1, test_fraction=0.4)
        dataset = "cuhk-pedes"
    elif recipe.get("root") and Path(recipe["root"]).resolve() != Path(root).resolve():
        log.warning(
            "INT8 check set %s is not the folder this bundle was trained on (%s): the check is "
            "only as good as its captions are like the ones the bundle will serve",
            root,
            recipe["root"],
        )
    records = load_records(dataset, root, "test")
    captions = [c for r in records for c in r.captions]
    return captions, sorted({Path(r.image_path) for r in records})


def export_onnx_towers(
    bundle_dir: Path,
    int8: bool = False,
    check_root: Path | None = None,
    min_overlap: float | None = None,
    batch_sizes: Sequence[int] | None = None,
) -> dict:
    """Write the bundle's towers as ONNX graphs; with ``int8`` also the INT8 text tower, kept
    only if its top-10 rankings of the test split's captions agree with fp32's (≥ 0.99) at every
    batch size the service encodes at (``batch_sizes``, default bundle.int8.CHECK_BATCHES)."""
    import tempfile

    from bundle.commands import export_with_checks
    from bundle.format import read_meta

    with tempfile.TemporaryDirectory(prefix="onnx-check-") as tmp:
        captions: list[str] = []
        images: list[Path] = []
        if int8:
            extra = read_meta(Path(bundle_dir)).extra
            captions, images = check_set(check_root, Path(tmp), extra)
        return export_with_checks(
            Path(bundle_dir), int8, captions, images, min_overlap, batch_sizes
        )
