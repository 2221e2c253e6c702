"""Build the open_clip image and text towers: random init, an open_clip tag (openai…) or a file."""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from bundle.openclip_import import import_open_clip
from training.model.activation import (
    Activation,
    ActivationUnknownError,
    flag_source,
    for_file,
    for_tag,
    unknown_message,
)
from training.model.weights import (
    Weights,
    WeightsError,
    WeightsReport,
    load_weights,
    log_loaded,
    read_weights,
)

log = logging.getLogger(__name__)

CONFIG_DIR = Path(__file__).parent / "configs"
MODELS = ("tiny", "ViT-B-16")
# ViT-B-16 runs on the pedestrian aspect ratio; open_clip resizes the 14×14 position grid to 24×8.
DEFAULT_IMAGE_SIZE = {"tiny": (192, 64), "ViT-B-16": (384, 128)}


class TowerError(Exception):
    """The model or its weights cannot be built as asked."""


@dataclass(frozen=True)
class TowerSpec:
    model: str = "tiny"
    pretrained: str = "none"  # none | an open_clip tag (openai, …) | PATH
    image_size: tuple[int, int] | None = None
    quick_gelu: bool | None = None  # None: auto, as the weights record it (model/activation.py)
    quick_gelu_source: str | None = None  # why quick_gelu is set, when not by --quick-gelu
    # How a pretrained square position grid is resized to the model's: open_clip's bicubic, or
    # the reference code's plain bilinear.
    pos_interpolation: str = "bicubic"

    def resolved_image_size(self) -> tuple[int, int]:
        return tuple(self.image_size or DEFAULT_IMAGE_SIZE[self.model])


@dataclass(frozen=True)
class Towers:
    model: torch.nn.Module
    model_cfg: dict  # the exact open_clip config a bundle needs to rebuild the model
    report: WeightsReport | None  # what was loaded, when ``pretrained`` is a weights file
    activation: Activation
    spec: TowerSpec  # the spec asked for, its activation resolved


def _model_config(name: str) -> dict:
    open_clip = import_open_clip()
    if name == "tiny" and open_clip.get_model_config("tiny") is None:
        open_clip.add_model_config(CONFIG_DIR / "tiny.json")
    cfg = open_clip.get_model_config(name)
    if cfg is None:
        raise TowerError(f"unknown model {name!r}; known: {', '.join(MODELS)}")
    return copy.deepcopy(cfg)


class _DropRandomInitWarning(logging.Filter):
    """Drops open_clip's root-logger warning that the model was left randomly initialised."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("No pretrained weights loaded")


def _pretrained_source(spec: TowerSpec) -> tuple[str | None, Path | None]:
    """(open_clip tag, weights file): at most one is set; ``none`` gives neither."""
    value = spec.pretrained
    if value == "none":
        return None, None
    open_clip = import_open_clip()
    if open_clip.is_pretrained_cfg(spec.model, value):
        return value, None
    path = Path(value).expanduser()
    if path.is_file():
        return None, path
    tags = open_clip.list_pretrained_tags_by_model(spec.model)
    if path.suffix or "/" in value or "\\" in value:
        raise TowerError(
            f"--pretrained {value}: no such file (use none, an open_clip tag or a weights file)"
        )
    if not tags:
        raise TowerError(
            f"--pretrained {value!r}: {spec.model} has no open_clip pretrained tags "
            "(openai and the other tags exist only for ViT-B-16); use none or a weights file"
        )
    raise TowerError(
        f"--pretrained {value!r}: unknown tag for {spec.model}; valid: none, {', '.join(tags)} "
        "or a weights file path"
    )


def _tag_file(model: str, tag: str) -> Path:
    """The local file of an open_clip pretrained tag (downloaded into open_clip's cache)."""
    open_clip = import_open_clip()
    try:
        found = open_clip.pretrained.download_pretrained(open_clip.get_pretrained_cfg(model, tag))
    except Exception as err:  # network, hub and cache errors of several libraries
        raise TowerError(f"could not fetch the {tag!r} weights of {model}: {err}") from err
    if not found:
        raise TowerError(f"open_clip has no file for the {tag!r} weights of {model}")
    return Path(found)


def _create_model(
    spec: TowerSpec, tag: str | None, image_size: tuple[int, int], quick_gelu: bool, filled: bool
) -> torch.nn.Module:
    """open_clip's model, with a tag's weights; ``filled``: our loader fills it in next."""
    open_clip = import_open_clip()
    # open_clip warns "initialized randomly" before our loader fills the model in: hide that.
    quiet = _DropRandomInitWarning() if filled else None
    root = logging.getLogger()
    if quiet:
        root.addFilter(quiet)
    try:
        return open_clip.create_model(
            spec.model,
            pretrained=tag,
            force_quick_gelu=quick_gelu,
            force_image_size=image_size,
        )
    except RuntimeError as err:
        raise TowerError(
            f"could not load {spec.pretrained!r} into {spec.model}: {_first_line(err)}"
        ) from err
    finally:
        if quiet:
            root.removeFilter(quiet)


def _activation(
    spec: TowerSpec, tag: str | None, weights: Weights | None
) -> tuple[Activation | None, str]:
    """The activation to build with, or None and why ``auto`` cannot tell (raised once the file
    has loaded, so that a file that does not fit is named first)."""
    try:
        recorded = for_file(weights) if weights is not None else for_tag(spec.model, tag)
        unknown = "" if recorded else unknown_message(weights.path if weights else spec.pretrained)
    except ActivationUnknownError as err:
        recorded, unknown = None, str(err)
    if spec.quick_gelu is None:
        return recorded, unknown
    chosen = Activation(spec.quick_gelu, spec.quick_gelu_source or flag_source(spec.quick_gelu))
    tag_or_file = tag is not None or weights is not None
    if recorded is not None and tag_or_file and recorded.quick_gelu != chosen.quick_gelu:
        log.warning(
            "%s, although %s records %s",
            chosen.describe(),
            spec.pretrained,
            recorded.describe(),
        )
    return chosen, ""


def build_towers_with_report(spec: TowerSpec) -> Towers:
    """build_towers, plus what was loaded and the activation chosen, and why."""
    if spec.model not in MODELS:
        raise TowerError(f"unknown model {spec.model!r}; known: {', '.join(MODELS)}")
    image_size = spec.resolved_image_size()
    cfg = _model_config(spec.model)
    cfg["vision_cfg"]["image_size"] = list(image_size)
    tag, path = _pretrained_source(spec)
    if tag is not None and spec.pos_interpolation != "bicubic":
        # open_clip resizes a tag's grid bicubically while loading; our loader takes the file
        # open_clip downloads (or has cached) for the tag instead.
        tag, path = None, _tag_file(spec.model, tag)
    # A file goes through our loader, not open_clip's torch.load (which cannot read OpenAI's
    # TorchScript archive with weights_only=True); a tag keeps open_clip's download and cache.
    # The file is read first so that a bad one fails before a large model is built.
    report = None
    try:
        weights = read_weights(path) if path is not None else None
        activation, unknown = _activation(spec, tag, weights)
        quick_gelu = activation.quick_gelu if activation else False
        model = _create_model(spec, tag, image_size, quick_gelu, filled=weights is not None)
        if weights is not None:
            report = load_weights(model, weights, spec.model, spec.pos_interpolation)
    except WeightsError as err:
        raise TowerError(str(err)) from err
    if activation is None:
        raise TowerError(unknown)
    if report is not None:
        log_loaded(report, spec.model)
    cfg["quick_gelu"] = activation.quick_gelu
    log.info(
        "towers %s (%s) image %sx%s, %s: %.1fM parameters",
        spec.model,
        spec.pretrained,
        *image_size,
        activation.describe(),
        sum(p.numel() for p in model.parameters()) / 1e6,
    )
    resolved = replace(spec, quick_gelu=activation.quick_gelu, quick_gelu_source=activation.source)
    return Towers(model, cfg, report, activation, resolved)


def build_towers(spec: TowerSpec) -> tuple[torch.nn.Module, dict]:
    """Return the open_clip CLIP model and the exact model config a bundle needs to rebuild it."""
    towers = build_towers_with_report(spec)
    return towers.model, towers.model_cfg


def _first_line(err: BaseException) -> str:
    lines = str(err).strip().splitlines()
    return lines[0] if lines else type(err).__name__
