"""QuickGELU or GELU: auto takes it only from what records it, and otherwise asks for the flag.

The stand-ins are the tiny towers: a GELU model saved as a bare ``.safetensors`` (an open_clip hub
file without its config), OpenAI's TorchScript format, a state dict saved from that archive, a
bundle's weights beside their config, and an open_clip training run's checkpoint.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from bundle.openclip_import import import_open_clip
from tests.training.model.test_weights import OPENAI_INTS, write_torchscript
from training.model.activation import MODEL_CONFIG_FILE
from training.model.towers import TowerError, TowerSpec, build_towers, build_towers_with_report

IMAGE = torch.randn(2, 3, 192, 64, generator=torch.Generator().manual_seed(1))


@pytest.fixture(scope="module")
def gelu_model() -> torch.nn.Module:
    """open_clip's tiny model with its default GELU (and random weights)."""
    torch.manual_seed(0)
    model, cfg = build_towers(TowerSpec("tiny"))
    assert cfg["quick_gelu"] is False
    return model.eval()


@pytest.fixture(scope="module")
def state(gelu_model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.contiguous() for k, v in gelu_model.state_dict().items()}


def _bare(state: dict[str, torch.Tensor], folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    save_file(state, str(folder / "open_clip_model.safetensors"))
    return folder / "open_clip_model.safetensors"


def _outputs(model: torch.nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    tokens = import_open_clip().get_tokenizer("tiny")(["a man in a red coat"])
    with torch.no_grad():
        return model.eval().encode_image(IMAGE), model.encode_text(tokens)


def test_a_gelu_file_that_records_nothing_is_refused_until_told(
    state: dict[str, torch.Tensor],
    gelu_model: torch.nn.Module,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    path = _bare(state, tmp_path / "hub")
    with (
        caplog.at_level(logging.INFO, logger="training"),
        pytest.raises(TowerError, match=r"does not record whether.*--quick-gelu false") as err,
    ):
        build_towers(TowerSpec("tiny", pretrained=str(path)))
    assert str(path) in str(err.value) and "\n" not in str(err.value)
    assert not caplog.records  # the refusal is the only line: no "loaded" before it

    told = build_towers_with_report(TowerSpec("tiny", pretrained=str(path), quick_gelu=False))
    assert told.model_cfg["quick_gelu"] is False
    assert told.activation.source == "--quick-gelu false"
    for ours, theirs in zip(_outputs(told.model), _outputs(gelu_model), strict=True):
        assert torch.equal(ours, theirs)
    # The wrong activation loads just as quietly and moves every output: what auto guards against.
    wrong, _ = build_towers(TowerSpec("tiny", pretrained=str(path), quick_gelu=True))
    for ours, theirs in zip(_outputs(wrong), _outputs(gelu_model), strict=True):
        assert (ours - theirs).abs().max() > 1e-3


def test_openais_formats_are_quick_gelu(state: dict[str, torch.Tensor], tmp_path: Path) -> None:
    archive = build_towers_with_report(
        TowerSpec("tiny", pretrained=str(write_torchscript(state, tmp_path / "ViT-B-16.pt")))
    )
    assert archive.model_cfg["quick_gelu"] is True
    assert archive.activation.source == "OpenAI's TorchScript archive"
    # torch.save(torch.jit.load("ViT-B-16.pt").state_dict()) keeps the archive's int entries.
    saved = tmp_path / "openai_state_dict.pt"
    torch.save({**state, **{k: torch.tensor(v) for k, v in OPENAI_INTS.items()}}, saved)
    towers = build_towers_with_report(TowerSpec("tiny", pretrained=str(saved)))
    assert towers.model_cfg["quick_gelu"] is True
    assert "config entries of OpenAI's archive" in towers.activation.source
    assert set(towers.model.state_dict()) == set(state)


def test_the_flag_wins_over_the_record_with_a_warning(
    state: dict[str, torch.Tensor], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = write_torchscript(state, tmp_path / "ViT-B-16.pt")
    with caplog.at_level(logging.WARNING, logger="training.model.towers"):
        _, cfg = build_towers(TowerSpec("tiny", pretrained=str(path), quick_gelu=False))
    assert cfg["quick_gelu"] is False
    assert "GELU (--quick-gelu false), although" in caplog.text
    assert "records QuickGELU (OpenAI's TorchScript archive)" in caplog.text


def test_a_bundle_records_its_activation(random_bundle: Path) -> None:
    weights = random_bundle / "open_clip_model.safetensors"
    towers = build_towers_with_report(TowerSpec("tiny", pretrained=str(weights)))
    assert towers.model_cfg["quick_gelu"] is False
    assert towers.activation.source == f"the model config {random_bundle / MODEL_CONFIG_FILE}"


@pytest.mark.parametrize("recorded", [True, False])
def test_a_model_config_beside_the_file_says_it(
    recorded: bool, state: dict[str, torch.Tensor], tmp_path: Path
) -> None:
    path = _bare(state, tmp_path / "hub")
    (path.parent / MODEL_CONFIG_FILE).write_text(
        json.dumps({"model_cfg": {"embed_dim": 128, "quick_gelu": recorded}})
    )
    _, cfg = build_towers(TowerSpec("tiny", pretrained=str(path)))
    assert cfg["quick_gelu"] is recorded


def test_a_broken_model_config_is_named(state: dict[str, torch.Tensor], tmp_path: Path) -> None:
    path = _bare(state, tmp_path / "hub")
    (path.parent / MODEL_CONFIG_FILE).write_text("{not json")
    with pytest.raises(TowerError, match=f"{MODEL_CONFIG_FILE} beside the weights is not"):
        build_towers(TowerSpec("tiny", pretrained=str(path)))


@pytest.mark.parametrize(("params", "quick_gelu"), [("False", False), ("True", True)])
def test_an_open_clip_run_records_it_in_its_params(
    params: str, quick_gelu: bool, state: dict[str, torch.Tensor], tmp_path: Path
) -> None:
    # open_clip's training: RUN/params.txt (its arguments), RUN/checkpoints/epoch_N.pt
    checkpoint = tmp_path / "run" / "checkpoints" / "epoch_1.pt"
    checkpoint.parent.mkdir(parents=True)
    torch.save({"epoch": 1, "name": "run", "state_dict": state}, checkpoint)
    (tmp_path / "run" / "params.txt").write_text(
        f"batch_size: 64\nforce_quick_gelu: {params}\nmodel: tiny\n"
    )
    towers = build_towers_with_report(TowerSpec("tiny", pretrained=str(checkpoint)))
    assert towers.model_cfg["quick_gelu"] is quick_gelu
    assert f"(model tiny, force_quick_gelu {quick_gelu})" in towers.activation.source


def test_open_clip_tags_and_random_init() -> None:
    assert build_towers_with_report(TowerSpec("tiny")).activation.quick_gelu is False
    assert build_towers_with_report(TowerSpec("tiny", quick_gelu=True)).model_cfg["quick_gelu"]
