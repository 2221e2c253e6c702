"""Read a CLIP weights file of any common format and load it strictly into an open_clip model.

Formats: OpenAI's TorchScript archive (what the ``clip`` package caches, e.g. ``ViT-B-16.pt``),
a plain state dict (one saved from OpenAI's archive keeps its int config entries: dropped, as the
archive's are), an open_clip training checkpoint (``{"state_dict": ...}``, keys maybe
prefixed ``module.``) and ``.safetensors``. Pickles are only ever read with
``torch.load(weights_only=True)``: a file holding other Python objects is refused, never run.
Loading is strict; the one tolerated difference is the image position grid, resized with
open_clip's own ``resize_pos_embed`` (14×14 at 224 → 24×8 at 384×128 for ViT-B/16).
"""

from __future__ import annotations

import logging
import math
import pickle
import re
import struct
import warnings
import zipfile
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch

from bundle.openclip_import import import_open_clip

log = logging.getLogger(__name__)

TORCHSCRIPT = "openai-torchscript"
STATE_DICT = "state-dict"
CHECKPOINT = "open_clip-checkpoint"
SAFETENSORS = "safetensors"
# OpenAI's archive keeps these config scalars among its tensors; open_clip drops them too.
OPENAI_CONFIG_KEYS = ("input_resolution", "context_length", "vocab_size")
POS_KEY = "visual.positional_embedding"
_SHOW = 4  # keys named in one error line


class WeightsError(Exception):
    """A weights file cannot be read, or does not fit the model; the message is one line."""


@dataclass(frozen=True)
class Weights:
    path: str
    format: str
    state_dict: dict[str, torch.Tensor]
    # The file carried OpenAI's config entries: its archive, or a state dict taken from one.
    openai_config: bool = False


@dataclass(frozen=True)
class Arch:
    """What a CLIP state dict looks like; ``None`` where its keys do not say."""

    vision: str | None = None  # ViT | ResNet
    vision_width: int | None = None
    patch_size: int | None = None
    vision_layers: int | None = None
    grid: tuple[int, int] | None = None  # image position grid; resizable, so not compared
    text_width: int | None = None
    text_layers: int | None = None
    context_length: int | None = None
    vocab_size: int | None = None
    embed_dim: int | None = None
    name: str | None = None  # the open_clip config it matches, if any

    def shape_fields(self) -> dict[str, object]:
        return {k: v for k, v in asdict(self).items() if k not in ("grid", "name")}

    def conflicts(self, other: Arch) -> bool:
        """Whether the two differ in a field both know (the grid excepted)."""
        mine, theirs = self.shape_fields(), other.shape_fields()
        known = [k for k in mine if mine[k] is not None and theirs[k] is not None]
        return any(mine[k] != theirs[k] for k in known)

    def describe(self) -> str:
        """e.g. ``ViT-B-16: ViT width 768 patch 16 12 layers grid 14x14; text width 512 …``;
        what the keys do not say is left out."""
        grid = f"{self.grid[0]}x{self.grid[1]}" if self.grid else None
        vision = _words(
            (self.vision or "unknown vision", ""),
            ("width {}", self.vision_width),
            ("patch {}", self.patch_size),
            ("{} layers", self.vision_layers),
            ("grid {}", grid),
        )
        text = _words(
            ("text", ""),
            ("width {}", self.text_width),
            ("{} layers", self.text_layers),
            ("context {}", self.context_length),
            ("vocab {}", self.vocab_size),
        )
        embed = f"; embed {self.embed_dim}" if self.embed_dim else ""
        return f"{self.name + ': ' if self.name else ''}{vision}; {text}{embed}"


def _words(*parts: tuple[str, object]) -> str:
    """Format each ``(template, value)`` whose value is known, e.g. ``("width {}", 768)``."""
    return " ".join(template.format(value) for template, value in parts if value is not None)


@dataclass(frozen=True)
class Resize:
    key: str
    source: tuple[int, ...]
    target: tuple[int, ...]
    source_grid: tuple[int, int]
    target_grid: tuple[int, int]

    def describe(self) -> str:
        shape = "x".join
        return (
            f"{self.key} {shape(map(str, self.source))} -> {shape(map(str, self.target))} "
            f"(grid {self.source_grid[0]}x{self.source_grid[1]} -> "
            f"{self.target_grid[0]}x{self.target_grid[1]})"
        )


@dataclass(frozen=True)
class WeightsReport:
    path: str
    format: str
    tensors: int
    parameters: int
    file_arch: Arch
    model_arch: Arch
    resized: list[Resize] = field(default_factory=list)
    interpolation: str = "bicubic"  # how a position grid was (or would be) resized


# --------------------------------------------------------------------------- reading


def _sniff(path: Path) -> str:
    """zip | safetensors | pickle, from the first bytes; anything else is not a weights file."""
    with open(path, "rb") as fh:
        head = fh.read(9)
    size = path.stat().st_size
    if not head:
        raise WeightsError(f"could not load {path}: the file is empty")
    if head.startswith(b"PK"):
        return "zip"
    if len(head) == 9 and head[8:9] == b"{" and struct.unpack("<Q", head[:8])[0] < size:
        return "safetensors"
    if path.suffix == ".safetensors":
        raise WeightsError(f"could not load {path}: corrupt safetensors file (bad header)")
    if head[0] == 0x80:  # pickle protocol 2+: torch's legacy format, or a plain pickle
        return "pickle"
    raise WeightsError(
        f"could not load {path}: not a weights file (neither a TorchScript or torch.save archive, "
        "a torch pickle nor a safetensors file)"
    )


def _zip_names(path: Path) -> list[str]:
    try:
        with zipfile.ZipFile(path) as zf:
            return zf.namelist()
    except (zipfile.BadZipFile, OSError) as err:
        raise WeightsError(
            f"could not load {path}: truncated or corrupt zip archive ({err}); download it again"
        ) from err


def _read_torchscript(path: Path) -> dict[str, torch.Tensor]:
    try:
        state = torch.jit.load(str(path), map_location="cpu").state_dict()
    except RuntimeError as err:
        raise WeightsError(
            f"could not load {path}: corrupt TorchScript archive ({_first_line(err)})"
        ) from err
    return {k: v for k, v in state.items() if k not in OPENAI_CONFIG_KEYS}


def _read_pickle(path: Path) -> object:
    """torch.load with weights_only=True: tensors and containers only, no other object built."""
    try:
        with warnings.catch_warnings():
            # torch warns about pickle protocols it may not support: noise, the load either
            # succeeds or is refused below.
            warnings.simplefilter("ignore", UserWarning)
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        found = re.search(r"GLOBAL (\S+)", str(err))
        what = f" (it references {found.group(1)})" if found else ""
        raise WeightsError(
            f"could not load {path}: not a weights file: it is a pickle of arbitrary Python "
            f"objects{what}, and arbitrary pickles are refused; save model.state_dict() or "
            ".safetensors instead"
        ) from err
    except (RuntimeError, EOFError, KeyError, ValueError, OSError) as err:
        raise WeightsError(
            f"could not load {path}: truncated or corrupt torch file ({_first_line(err)})"
        ) from err


def _read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError) as err:
        raise WeightsError(
            f"could not load {path}: truncated or corrupt safetensors file ({_first_line(err)})"
        ) from err


def _unwrap(obj: object, path: Path) -> tuple[str, Mapping[str, object]]:
    if isinstance(obj, Mapping) and isinstance(obj.get("state_dict"), Mapping):
        return CHECKPOINT, obj["state_dict"]
    if isinstance(obj, Mapping) and obj:
        return STATE_DICT, obj
    if isinstance(obj, Mapping):
        raise WeightsError(f"could not load {path}: the file holds an empty dict")
    raise WeightsError(
        f"could not load {path}: not a weights file: it holds a {type(obj).__name__}, "
        "not a state dict"
    )


def _tensors_only(state: Mapping[str, object], path: Path) -> dict[str, torch.Tensor]:
    others = [k for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if others:
        raise WeightsError(
            f"could not load {path}: not a state dict: {len(others)} entries are not tensors "
            f"({_first(others)})"
        )
    tensors = {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}
    if all(k.startswith("module.") for k in tensors):  # saved from DataParallel/DDP
        tensors = {k[len("module.") :]: v for k, v in tensors.items()}
    return tensors


def read_weights(path: str | Path) -> Weights:
    """The file's CLIP state dict, floating tensors as float32, and which format it was in."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise WeightsError(f"could not load {path}: no such file")
    kind = _sniff(path)
    if kind == "zip" and any(n.endswith("constants.pkl") for n in _zip_names(path)):
        fmt, state = TORCHSCRIPT, _read_torchscript(path)
    elif kind == "safetensors":
        fmt, state = SAFETENSORS, _read_safetensors(path)
    else:
        fmt, state = _unwrap(_read_pickle(path), path)
    tensors = _tensors_only(state, path)
    openai_config = fmt == TORCHSCRIPT or _drop_openai_config(tensors)
    # OpenAI ships fp16; training and the resize want float32.
    tensors = {k: v.float() if v.is_floating_point() else v for k, v in tensors.items()}
    return Weights(str(path), fmt, tensors, openai_config)


def _drop_openai_config(tensors: dict[str, torch.Tensor]) -> bool:
    """Remove OpenAI's three int config scalars from a state dict saved from its archive
    (``torch.jit.load(...).state_dict()``); whether they were all there."""
    found = [
        k
        for k in OPENAI_CONFIG_KEYS
        if k in tensors and tensors[k].ndim == 0 and not tensors[k].is_floating_point()
    ]
    if len(found) < len(OPENAI_CONFIG_KEYS):
        return False
    for key in found:
        del tensors[key]
    return True


# --------------------------------------------------------------------------- architecture


def _layers(state: Mapping[str, torch.Tensor], prefix: str) -> int | None:
    pattern = re.compile(re.escape(prefix) + r"(\d+)\.")
    found = {m.group(1) for k in state if (m := pattern.match(k))}
    return len(found) or None


def _dim(state: Mapping[str, torch.Tensor], key: str, axis: int) -> int | None:
    tensor = state.get(key)
    return int(tensor.shape[axis]) if tensor is not None and tensor.ndim > axis else None


def _square_grid(positions: int) -> tuple[int, int] | None:
    side = math.isqrt(positions)
    return (side, side) if side * side == positions and side else None


def infer_arch(state: Mapping[str, torch.Tensor], grid: tuple[int, int] | None = None) -> Arch:
    """Describe a CLIP state dict (open_clip / OpenAI key names); ``grid`` overrides the
    position grid, which a state dict only gives when it is square."""
    resnet = any(k.startswith("visual.attnpool.") for k in state)
    vit = not resnet and "visual.class_embedding" in state
    positions = _dim(state, POS_KEY, 0)
    if grid is None and vit and positions:
        grid = _square_grid(positions - 1)
    arch = Arch(
        vision="ResNet" if resnet else "ViT" if vit else None,
        vision_width=_dim(state, "visual.conv1.weight", 0) if vit else None,
        patch_size=_dim(state, "visual.conv1.weight", 3) if vit else None,
        vision_layers=_layers(state, "visual.transformer.resblocks.") if vit else None,
        grid=grid if vit else None,
        text_width=_dim(state, "token_embedding.weight", 1),
        text_layers=_layers(state, "transformer.resblocks."),
        context_length=_dim(state, "positional_embedding", 0),
        vocab_size=_dim(state, "token_embedding.weight", 0),
        embed_dim=_dim(state, "text_projection", 1),
    )
    return replace(arch, name=_config_name(arch))


def _config_arch(cfg: dict) -> Arch | None:
    vision, text = cfg.get("vision_cfg", {}), cfg.get("text_cfg", {})
    if (
        "timm_model_name" in vision
        or "hf_model_name" in text
        or isinstance(vision.get("layers"), list | tuple)
    ):
        return None
    open_clip = import_open_clip()
    try:
        v, t = open_clip.model.CLIPVisionCfg(**vision), open_clip.model.CLIPTextCfg(**text)
    except TypeError:
        return None
    return Arch(
        "ViT", v.width, v.patch_size, v.layers, None, t.width, t.layers, t.context_length,
        t.vocab_size, cfg.get("embed_dim"),
    )  # fmt: skip


def _config_name(arch: Arch) -> str | None:
    """The shortest open_clip config name with this architecture (ViT only)."""
    if arch.vision != "ViT" or None in arch.shape_fields().values():
        return None
    open_clip = import_open_clip()
    wanted = arch.shape_fields()
    names = sorted(open_clip.list_models(), key=lambda n: (len(n), n))
    for name in names:
        cfg_arch = _config_arch(open_clip.get_model_config(name) or {})
        if cfg_arch is not None and cfg_arch.shape_fields() == wanted:
            return name
    return None


def model_arch(model: torch.nn.Module) -> Arch:
    grid = getattr(getattr(model, "visual", None), "grid_size", None)
    return infer_arch(model.state_dict(), tuple(grid) if grid is not None else None)


# --------------------------------------------------------------------------- loading


def _first(keys: list[str]) -> str:
    more = f", … {len(keys) - _SHOW} more" if len(keys) > _SHOW else ""
    return ", ".join(keys[:_SHOW]) + more


def _first_line(err: BaseException) -> str:
    lines = str(err).strip().splitlines()
    return lines[0] if lines else type(err).__name__


def _shape(t: torch.Tensor | torch.Size) -> str:
    return "x".join(map(str, tuple(t.shape if isinstance(t, torch.Tensor) else t))) or "scalar"


def resize_grid_bilinear(pos: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """The reference code's resize of a (1 + g², D) position table to ``grid`` (H, W): plain
    bilinear interpolation, half-pixel centres, no anti-aliasing (open_clip's bilinear mode
    anti-aliases when it shrinks, which the 14 → 8 columns do, so it would differ)."""
    import torch.nn.functional as F

    side = _square_grid(pos.shape[0] - 1)
    if side is None:
        raise WeightsError(f"{POS_KEY} of {pos.shape[0]} rows is not a class token + square grid")
    table = pos[1:].reshape(1, side[0], side[1], -1).permute(0, 3, 1, 2).float()
    table = F.interpolate(table, size=grid, mode="bilinear", align_corners=False)
    table = table.permute(0, 2, 3, 1).reshape(grid[0] * grid[1], -1).to(pos.dtype)
    return torch.cat([pos[:1], table], dim=0)


def _resize_grid(
    state: dict[str, torch.Tensor],
    model: torch.nn.Module,
    expected: Mapping,
    path: str,
    interpolation: str = "bicubic",
) -> list[Resize]:
    """Resize a square pretrained position grid to the model's: open_clip's own function
    (bicubic), or the reference code's plain bilinear one."""
    source, target = state.get(POS_KEY), expected.get(POS_KEY)
    if source is None or target is None or source.shape == target.shape:
        return []
    grid = _square_grid(source.shape[0] - 1) if source.ndim == 2 else None
    if grid is None or source.shape[1] != target.shape[1]:
        raise WeightsError(
            f"could not load {path}: {POS_KEY} is {_shape(source)}, not a square grid of "
            f"width {target.shape[1]} that could be resized to the model's {_shape(target)}"
        )
    target_grid = tuple(int(g) for g in model.visual.grid_size)
    if interpolation == "bilinear":
        state[POS_KEY] = resize_grid_bilinear(source, target_grid)
    elif interpolation == "bicubic":
        import_open_clip().model.resize_pos_embed(state, model)
    else:
        raise WeightsError(f"unknown position-grid interpolation {interpolation!r}")
    return [Resize(POS_KEY, tuple(source.shape), tuple(target.shape), grid, target_grid)]


def _check_keys(state: Mapping[str, torch.Tensor], expected: Mapping, path: str) -> None:
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing keys ({_first(missing)})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys ({_first(unexpected)})")
        raise WeightsError(f"could not load {path}: {'; '.join(parts)}")


def _check_shapes(state: Mapping[str, torch.Tensor], expected: Mapping, path: str) -> None:
    wrong = [
        f"{k} {_shape(state[k])} vs {_shape(v)}"
        for k, v in expected.items()
        if state[k].shape != v.shape
    ]
    if wrong:
        raise WeightsError(
            f"could not load {path}: {len(wrong)} tensors of another shape (file vs model: "
            f"{_first(wrong)})"
        )


def load_weights(
    model: torch.nn.Module,
    weights: Weights | str | Path,
    model_name: str | None = None,
    interpolation: str = "bicubic",
) -> WeightsReport:
    """Load a file (or what read_weights made of it) into ``model`` strictly: only the image
    position grid may be resized (``interpolation``: bicubic, or bilinear as the reference).
    Logs nothing: the caller logs the report (log_loaded) once the load is accepted."""
    if not isinstance(weights, Weights):
        weights = read_weights(weights)
    state = dict(weights.state_dict)
    expected = model.state_dict()
    file_arch, want = infer_arch(state), model_arch(model)
    if file_arch.conflicts(want):
        raise WeightsError(
            f"could not load {weights.path}: another architecture: the file looks like "
            f"{file_arch.describe()}, but {model_name or 'the model'} expects {want.describe()}"
        )
    _check_keys(state, expected, weights.path)
    resized = _resize_grid(state, model, expected, weights.path, interpolation)
    _check_shapes(state, expected, weights.path)
    model.load_state_dict(state, strict=True)
    report = WeightsReport(
        path=weights.path,
        format=weights.format,
        tensors=len(weights.state_dict),
        parameters=sum(p.numel() for p in model.parameters()),
        file_arch=file_arch,
        model_arch=want,
        resized=resized,
        interpolation=interpolation,
    )
    return report


def log_loaded(report: WeightsReport, model_name: str | None = None) -> None:
    """One log line: what was loaded, and what was resized."""
    log.info(
        "loaded %s (%s): %d tensors into %s, %.1fM parameters; resized (%s): %s",
        report.path,
        report.format,
        report.tensors,
        model_name or "the model",
        report.parameters / 1e6,
        report.interpolation,
        "; ".join(r.describe() for r in report.resized) or "nothing",
    )
