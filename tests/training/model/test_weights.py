"""Pretrained weights files: every format loads exactly, every bad file fails in one clear line.

The stand-in of OpenAI's ``ViT-B-16.pt`` is a TorchScript archive with OpenAI's key names, fp16
tensors and the three int config entries, as the ``clip`` package caches it.
"""

from __future__ import annotations

import logging
import math
import pickle
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from bundle.openclip_import import import_open_clip
from training.model.towers import TowerError, TowerSpec, build_towers
from training.model.weights import OPENAI_CONFIG_KEYS, POS_KEY

OPENAI_INTS = {"input_resolution": 224, "context_length": 77, "vocab_size": 49408}
FORMATS = {
    "openai-torchscript": "ViT-B-16.pt",
    "state-dict": "state_dict.pt",
    "open_clip-checkpoint": "epoch_1.pt",
    "safetensors": "open_clip_model.safetensors",
}


class _Holder(torch.nn.Module):
    def forward(self) -> int:  # TorchScript wants a method to compile; nothing calls it
        return 0


def _scriptable(state: dict[str, torch.Tensor]) -> torch.nn.Module:
    """A module tree whose state_dict() is ``state``, key for key (``a.b.c`` → module a.b)."""
    root = _Holder()
    for key, tensor in state.items():
        *path, name = key.split(".")
        module = root
        for part in path:
            if part not in module._modules:
                module.add_module(part, torch.nn.Module())
            module = module._modules[part]
        if tensor.is_floating_point():
            module.register_parameter(name, torch.nn.Parameter(tensor, requires_grad=False))
        else:
            module.register_buffer(name, tensor)
    return root


def write_torchscript(state: dict[str, torch.Tensor], path: Path) -> Path:
    """OpenAI's format: fp16 tensors plus the int config entries, as a TorchScript archive."""
    ints = {k: torch.tensor(v) for k, v in OPENAI_INTS.items()}
    torch.jit.script(_scriptable({**state, **ints})).save(str(path))
    return path


def openai_source() -> dict[str, torch.Tensor]:
    """A random ViT-B-16 (QuickGELU, 224×224) state dict in fp16, as OpenAI ships it."""
    torch.manual_seed(0)
    model = import_open_clip().create_model("ViT-B-16", force_quick_gelu=True)
    return {k: v.half() for k, v in model.state_dict().items()}


def write_formats(state: dict[str, torch.Tensor], out: Path) -> dict[str, Path]:
    """The same weights in every supported format."""
    out.mkdir(parents=True, exist_ok=True)
    paths = {fmt: out / name for fmt, name in FORMATS.items()}
    write_torchscript(state, paths["openai-torchscript"])
    torch.save(state, paths["state-dict"])
    # open_clip's training checkpoints: float32, under "state_dict", DDP's "module." prefix.
    wrapped = {"module." + k: v.float() for k, v in state.items()}
    torch.save({"epoch": 1, "name": "run", "state_dict": wrapped}, paths["open_clip-checkpoint"])
    save_file({k: v.contiguous() for k, v in state.items()}, str(paths["safetensors"]))
    return paths


@pytest.fixture(scope="module")
def source() -> dict[str, torch.Tensor]:
    return openai_source()


@pytest.fixture(scope="module")
def weight_files(
    source: dict[str, torch.Tensor], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Path]:
    return write_formats(source, tmp_path_factory.mktemp("weights"))


def test_the_stand_in_has_openais_keys(weight_files: dict[str, Path], source: dict) -> None:
    state = torch.jit.load(str(weight_files["openai-torchscript"]), map_location="cpu").state_dict()
    assert set(state) == set(source) | set(OPENAI_CONFIG_KEYS)
    assert state["visual.conv1.weight"].dtype == torch.float16


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_every_format_loads_every_tensor(
    fmt: str,
    weight_files: dict[str, Path],
    source: dict[str, torch.Tensor],
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.INFO, logger="training.model.weights"):
        spec = TowerSpec("ViT-B-16", pretrained=str(weight_files[fmt]), quick_gelu=True)
        model, cfg = build_towers(spec)
    assert cfg["quick_gelu"] is True and cfg["vision_cfg"]["image_size"] == [384, 128]
    loaded = model.state_dict()
    assert set(loaded) == set(source)
    for key, tensor in loaded.items():
        if key != POS_KEY:
            assert torch.equal(tensor, source[key].float()), key
    # The only change: open_clip's own resize of the 14×14 grid to 24×8.
    expected = {POS_KEY: source[POS_KEY].float()}
    import_open_clip().model.resize_pos_embed(expected, model)
    assert loaded[POS_KEY].shape == (1 + 24 * 8, 768)
    assert torch.equal(loaded[POS_KEY], expected[POS_KEY])
    lines = [r.getMessage() for r in caplog.records if r.name == "training.model.weights"]
    assert len(lines) == 1
    assert f"({fmt}): {len(source)} tensors" in lines[0]
    assert f"{POS_KEY} 197x768 -> 193x768 (grid 14x14 -> 24x8)" in lines[0]


# ----------------------------------------------------------------------------- bad files

RAN = "side effect ran"


def _side_effect(path: str) -> None:
    Path(path).write_text(RAN)


class _Payload:
    """Unpickling this calls _side_effect: a loader that runs it would have run anything."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return _side_effect, (str(self.marker),)


@pytest.fixture(scope="module")
def tiny_state() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return build_towers(TowerSpec("tiny"))[0].state_dict()


def _other_tiny() -> dict[str, torch.Tensor]:
    """The tiny config, narrower and shallower: another architecture, cheaply."""
    clip = import_open_clip().model.CLIP(
        embed_dim=64,
        vision_cfg={"image_size": [192, 64], "layers": 2, "width": 64, "patch_size": 16},
        text_cfg={"context_length": 56, "width": 64, "heads": 2, "layers": 2},
    )
    return clip.state_dict()


def _bad_file(kind: str, tmp: Path, state: dict[str, torch.Tensor]) -> Path:
    path = tmp / f"{kind}.pt"
    if kind == "truncated":
        torch.save(state, path)
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif kind == "torch pickle of objects":
        torch.save({"state_dict": state, "extra": _Payload(tmp / "marker")}, path)
    elif kind == "plain pickle of objects":
        path.write_bytes(pickle.dumps({"weights": _Payload(tmp / "marker")}, protocol=4))
    elif kind == "text":
        path.write_text("these are not weights\n")
    elif kind == "another architecture":
        torch.save(_other_tiny(), path)
    elif kind == "missing key":
        torch.save({k: v for k, v in state.items() if k != "ln_final.bias"}, path)
    elif kind == "unexpected key":
        torch.save({**state, "visual.extra_head.weight": torch.zeros(3)}, path)
    elif kind == "other shape":
        torch.save({**state, "ln_final.bias": torch.zeros(7)}, path)
    return path


BAD = {
    "missing file": "no such file",
    "truncated": "truncated or corrupt zip archive",
    "torch pickle of objects": "not a weights file.*arbitrary pickles are refused",
    "plain pickle of objects": "not a weights file.*arbitrary pickles are refused",
    "text": "not a weights file",
    "another architecture": (
        "another architecture: the file looks like ViT width 64 patch 16 2 layers.*text width "
        "64 .*but tiny expects tiny: ViT width 128 patch 16 4 layers"
    ),
    "missing key": r"1 missing keys \(ln_final.bias\)",
    "unexpected key": r"1 unexpected keys \(visual.extra_head.weight\)",
    "other shape": r"tensors of another shape \(file vs model: ln_final.bias 7 vs 128\)",
}


@pytest.mark.parametrize("kind", list(BAD))
def test_bad_files_fail_in_one_line_naming_the_problem(
    kind: str, tmp_path: Path, tiny_state: dict[str, torch.Tensor]
) -> None:
    path = (
        tmp_path / "absent.pt" if kind == "missing file" else _bad_file(kind, tmp_path, tiny_state)
    )
    with pytest.raises(TowerError, match=BAD[kind]) as err:
        build_towers(TowerSpec("tiny", pretrained=str(path)))
    assert "\n" not in str(err.value)
    assert not (tmp_path / "marker").exists(), "the pickle was unpickled"


def test_unknown_tag_lists_the_valid_ones() -> None:
    with pytest.raises(TowerError, match="unknown tag for ViT-B-16; valid: none, openai, "):
        build_towers(TowerSpec("ViT-B-16", pretrained="laion9000"))


def _reference_resize_pos_embed(posemb, hight, width):
    """model/clip_model.py's resize_pos_embed of zhangweifeng1218/VFE_TPS, line for line."""
    import torch.nn.functional as F

    posemb = posemb.unsqueeze(0)
    posemb_token, posemb_grid = posemb[:, :1], posemb[0, 1:]
    gs_old = int(math.sqrt(len(posemb_grid)))
    posemb_grid = posemb_grid.reshape(1, gs_old, gs_old, -1).permute(0, 3, 1, 2)
    posemb_grid = F.interpolate(posemb_grid, size=(hight, width), mode="bilinear")
    posemb_grid = posemb_grid.permute(0, 2, 3, 1).reshape(1, hight * width, -1)
    posemb = torch.cat([posemb_token, posemb_grid], dim=1)
    return posemb.squeeze(0)


def test_bilinear_grid_resize_is_the_reference_codes(tmp_path: Path) -> None:
    # A tiny model of square 128×128 inputs (an 8×8 grid) loaded into 192×64 crops (12×4).
    torch.manual_seed(0)
    square, _ = build_towers(TowerSpec("tiny", image_size=(128, 128)))
    path = tmp_path / "square.pt"
    torch.save(square.state_dict(), path)
    source = square.state_dict()[POS_KEY]
    spec = TowerSpec("tiny", pretrained=str(path), quick_gelu=False, pos_interpolation="bilinear")
    loaded = build_towers(spec)[0].state_dict()[POS_KEY]
    assert torch.equal(loaded, _reference_resize_pos_embed(source, 12, 4))
    bicubic = build_towers(TowerSpec("tiny", pretrained=str(path), quick_gelu=False))[0]
    bicubic = bicubic.state_dict()[POS_KEY]
    assert (loaded - bicubic).abs().max() > 1e-3
