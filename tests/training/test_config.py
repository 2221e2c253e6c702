"""Training configuration: YAML, CLI overrides and validation."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from training.config import TrainConfig, load_config


def test_cli_overrides_yaml(tmp_path: Path) -> None:
    path = tmp_path / "cfg.yaml"
    path.write_text("root: /data/cuhk\nepochs: 60\nlosses: cmpm,tgmim\nlr: 1.0e-5\n")
    cfg = load_config(path, {"epochs": 3, "lr": None})
    assert cfg.epochs == 3 and cfg.lr == 1e-5
    assert cfg.losses == ["cmpm", "tgmim"]
    assert cfg.root == Path("/data/cuhk")


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"losses": "cmpm,nope"}, "unknown losses"),
        ({"losses": "tgmim"}, "alignment loss"),
        ({"losses": "cmpm,sdm"}, "one alignment loss"),
        ({"batch_size": 10, "instances_per_id": 4}, "multiple of instances_per_id"),
        ({"mask_ratio": 1.5}, "less than 1"),
    ],
)
def test_bad_settings_are_refused(overrides: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        TrainConfig(root=Path("."), **overrides)


def test_unknown_key_in_yaml_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "cfg.yaml"
    path.write_text("root: x\nepoch: 3\n")
    with pytest.raises(ValidationError, match="epoch"):
        load_config(path, {})


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        load_config(tmp_path / "nope.yaml", {})
