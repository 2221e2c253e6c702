"""Which activation the towers use: QuickGELU (OpenAI's CLIP) or GELU (open_clip's default).

Weights load into either without a complaint, and the wrong one moves every output by a few
percent of its scale, so ``auto`` takes the choice only from what records it: OpenAI's own
formats, an open_clip tag, or the model config open_clip and our bundles keep beside a weights
file. Anything else must be told with ``--quick-gelu``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from bundle.openclip_import import import_open_clip
from training.model.weights import CHECKPOINT, TORCHSCRIPT, Weights

# Beside the weights of open_clip's hub folders and of every bundle: {"model_cfg": {...}, ...}.
MODEL_CONFIG_FILE = "open_clip_config.json"
# open_clip's training writes RUN/params.txt (its arguments) and RUN/checkpoints/epoch_N.pt.
RUN_PARAMS_FILE = "params.txt"


class ActivationUnknownError(Exception):
    """``auto`` cannot tell which activation the weights were trained with; one line."""


@dataclass(frozen=True)
class Activation:
    quick_gelu: bool
    source: str  # what decided it, in words

    def describe(self) -> str:
        return f"{'QuickGELU' if self.quick_gelu else 'GELU'} ({self.source})"

    def record(self) -> dict[str, object]:
        """As run logs and bundles record it."""
        return {"quick_gelu": self.quick_gelu, "source": self.source}


def flag_source(quick_gelu: bool) -> str:
    return f"--quick-gelu {str(quick_gelu).lower()}"


def for_tag(model: str, tag: str | None) -> Activation:
    """Random initialisation (no tag) or an open_clip tag, which records its activation."""
    if tag is None:
        return Activation(False, "random initialisation: open_clip's default GELU")
    if tag == "openai":
        return Activation(True, "the openai tag: OpenAI's CLIP uses QuickGELU")
    quick_gelu = bool(import_open_clip().get_pretrained_cfg(model, tag).get("quick_gelu"))
    return Activation(quick_gelu, f"open_clip's record of the tag {tag}")


def for_file(weights: Weights) -> Activation | None:
    """What the file, or a model config kept beside it, records; None when nothing does."""
    if weights.format == TORCHSCRIPT:
        return Activation(True, "OpenAI's TorchScript archive")
    if weights.openai_config:
        return Activation(True, "a state dict with the config entries of OpenAI's archive")
    path = Path(weights.path)
    config = path.parent / MODEL_CONFIG_FILE
    if config.is_file():
        return _from_model_config(config)
    params = path.parent.parent / RUN_PARAMS_FILE
    if weights.format == CHECKPOINT and path.parent.name == "checkpoints" and params.is_file():
        return _from_run_params(params)
    return None


def unknown_message(path: str | Path) -> str:
    return (
        f"{path} does not record whether its model uses QuickGELU (OpenAI's CLIP weights, "
        "open_clip's *-quickgelu models) or GELU (most other open_clip weights), and the wrong "
        "one changes every output; pass --quick-gelu true or --quick-gelu false"
    )


def _from_model_config(config: Path) -> Activation:
    try:
        model_cfg = json.loads(config.read_text())["model_cfg"]
        quick_gelu = model_cfg.get("quick_gelu", False)  # open_clip's default when left out
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
        raise ActivationUnknownError(
            f"{config} beside the weights is not an open_clip model config ({type(err).__name__}: "
            f"{err}); fix it or pass --quick-gelu true or --quick-gelu false"
        ) from err
    if not isinstance(quick_gelu, bool):
        raise ActivationUnknownError(
            f"{config}: quick_gelu is {quick_gelu!r}, not true or false; "
            "pass --quick-gelu true or --quick-gelu false"
        )
    return Activation(quick_gelu, f"the model config {config}")


def _from_run_params(params: Path) -> Activation | None:
    """open_clip's run arguments: its model's config says the activation, ``force_quick_gelu``
    overrides; None when the model is not one open_clip knows."""
    values = {}
    for line in params.read_text(errors="replace").splitlines():
        name, sep, value = line.partition(": ")
        if sep:
            values[name.strip()] = value.strip()
    model = values.get("model", "")
    forced = values.get("force_quick_gelu") == "True"
    model_cfg = import_open_clip().get_model_config(model) if model else None
    if model_cfg is None and not forced:
        return None
    quick_gelu = forced or bool((model_cfg or {}).get("quick_gelu"))
    return Activation(
        quick_gelu, f"the open_clip run's {params} (model {model}, force_quick_gelu {forced})"
    )
