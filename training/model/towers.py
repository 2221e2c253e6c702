"""Build the open_clip image and text towers, from random init, OpenAI weights or a local file."""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass
from pathlib import Path

import torch

from index.openclip_import import import_open_clip

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
    pretrained: str = "none"  # none | openai | PATH
    image_size: tuple[int, int] | None = None
    quick_gelu: bool | None = None  # None: on for OpenAI weights (openai or a file), off for none

    def resolved_image_size(self) -> tuple[int, int]:
        return tuple(self.image_size or DEFAULT_IMAGE_SIZE[self.model])

    def resolved_quick_gelu(self) -> bool:
        if self.quick_gelu is not None:
            return self.quick_gelu
        return self.pretrained != "none"


def _model_config(name: str) -> dict:
    open_clip = import_open_clip()
    if name == "tiny" and open_clip.get_model_config("tiny") is None:
        open_clip.add_model_config(CONFIG_DIR / "tiny.json")
    cfg = open_clip.get_model_config(name)
    if cfg is None:
        raise TowerError(f"unknown model {name!r}; known: {', '.join(MODELS)}")
    return copy.deepcopy(cfg)


def build_towers(spec: TowerSpec) -> tuple[torch.nn.Module, dict]:
    """Return the open_clip CLIP model and the exact model config a bundle needs to rebuild it."""
    if spec.model not in MODELS:
        raise TowerError(f"unknown model {spec.model!r}; known: {', '.join(MODELS)}")
    open_clip = import_open_clip()
    image_size = spec.resolved_image_size()
    quick_gelu = spec.resolved_quick_gelu()
    cfg = _model_config(spec.model)
    cfg["vision_cfg"]["image_size"] = list(image_size)
    cfg["quick_gelu"] = quick_gelu

    pretrained: str | None = None
    if spec.pretrained == "openai":
        if spec.model != "ViT-B-16":
            raise TowerError("--pretrained openai exists only for ViT-B-16")
        pretrained = "openai"
    elif spec.pretrained != "none":
        path = Path(spec.pretrained)
        if not path.is_file():
            raise TowerError(f"--pretrained {path}: no such file (use openai, none or a file path)")
        pretrained = str(path)
    try:
        model = open_clip.create_model(
            spec.model,
            pretrained=pretrained,
            force_quick_gelu=quick_gelu,
            force_image_size=image_size,
        )
    except RuntimeError as err:
        # open_clip reports shape mismatches as load_state_dict RuntimeErrors; keep the first lines.
        head = "\n".join(str(err).splitlines()[:6])
        raise TowerError(f"could not load {spec.pretrained!r} into {spec.model}: {head}") from err
    log.info(
        "towers %s (%s) image %sx%s quick_gelu=%s: %.1fM parameters",
        spec.model,
        spec.pretrained,
        *image_size,
        quick_gelu,
        sum(p.numel() for p in model.parameters()) / 1e6,
    )
    return model, cfg
