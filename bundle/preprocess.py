"""The bundle's eval-time image preprocessing, built from its config without building the model.

The ONNX runtime never loads the torch model, yet its images must be preprocessed exactly as
open_clip's ``create_model_and_transforms("local-dir:BUNDLE")`` would: open_clip's defaults,
overlaid with the bundle's ``preprocess_cfg`` (whose size is the towers' input size).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bundle.format import CONFIG_FILE, BundleError
from bundle.openclip_import import import_open_clip


def load_preprocess(bundle_dir: Path) -> Callable[[Any], Any]:
    import_open_clip()  # makes open_clip importable on this install first
    from open_clip.transform import PreprocessCfg, image_transform_v2, merge_preprocess_dict

    path = Path(bundle_dir) / CONFIG_FILE
    try:
        config = json.loads(path.read_text())
        overlay = config.get("preprocess_cfg", {})
        size = config["model_cfg"]["vision_cfg"].get("image_size", overlay.get("size"))
    except (OSError, json.JSONDecodeError, KeyError, AttributeError) as err:
        raise BundleError(f"cannot read the preprocessing of {path}: {err}") from err
    cfg = merge_preprocess_dict(PreprocessCfg(), overlay)
    if size is not None:  # open_clip too takes the size from the vision tower
        cfg["size"] = tuple(size) if isinstance(size, list) else size
    return image_transform_v2(PreprocessCfg(**cfg), is_train=False)
