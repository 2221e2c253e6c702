"""Training configuration: YAML, CLI overrides and validation."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from training.config import TrainConfig, load_config, recipe_changes

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


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


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"val_split": "test"}, "select-on-test"),
        ({"sampler": "random"}, "isgvfc needs batches"),
        ({"accept_changes": "lr,nope"}, "unknown settings: nope"),
        ({"no_decay": "bias,weights"}, "no_decay"),
        ({"losses": "cmpm,isgvfc", "mim_mask": "token"}, "mim_mask token need the tgmim loss"),
        ({"losses": "cmpm,isgvfc", "mim_decoder": "reference"}, "need the tgmim loss"),
        (
            {"mim_decoder": "reference", "mim_dropout": 0, "mim_init": "clip", "mim_width": 512},
            "leave mim_width unset",
        ),
        ({"mim_decoder": "reference", "mim_init": "clip"}, "set mim_dropout 0"),
        ({"mim_decoder": "reference", "mim_dropout": 0}, "set mim_init clip"),
        ({"new_module_lr_scope": "reference"}, "use it with mim_decoder reference"),
        ({"random_erasing_fill": "mean"}, "needs random_erasing > 0"),
        ({"bias_lr_mode": "replace"}, "bias_lr_mode"),
        ({"resize_interpolation": "nearest"}, "resize_interpolation"),
        ({"losses": "cmpm,gi2id,nope"}, "unknown losses"),
    ],
)
def test_dishonest_or_impossible_runs_are_refused(overrides: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        TrainConfig(root=Path("."), **overrides)


def test_test_selection_and_random_batches_when_asked_for_explicitly() -> None:
    cfg = TrainConfig(root=Path("."), val_split="test", select_on_test=True)
    assert cfg.val_split == "test"
    baseline = TrainConfig(root=Path("."), losses="cmpm", sampler="random", batch_size=10)
    assert baseline.sampler == "random"  # no P×K constraint on the batch size


def test_recipe_changes_ignore_run_only_settings() -> None:
    old = TrainConfig(root=Path("/d"), lr=1e-5).model_dump(mode="json")
    new = TrainConfig(root=Path("/d"), lr=2e-5, workers=0, max_minutes=5, epochs=70)
    assert recipe_changes(old, new) == {"lr": (1e-5, 2e-5), "epochs": (60, 70)}
    del old["adam_eps"]  # a config recorded before the setting existed
    assert "adam_eps" not in recipe_changes(old, new)
    assert "adam_eps" in recipe_changes(old, new.model_copy(update={"adam_eps": 1e-3}))


def test_quick_gelu_is_auto_true_or_false(tmp_path: Path) -> None:
    from training.cli import build_parser

    args = vars(build_parser().parse_args(["train", "--root", ".", "--quick-gelu", "False"]))
    assert args["quick_gelu"] == "false"
    assert load_config(None, {"root": ".", "quick_gelu": args["quick_gelu"]}).quick_gelu is False
    assert load_config(None, {"root": ".", "quick_gelu": "auto"}).quick_gelu == "auto"
    assert TrainConfig(root=Path("."), quick_gelu=None).quick_gelu == "auto"  # recorded before auto
    path = tmp_path / "cfg.yaml"
    path.write_text("root: /data\nquick_gelu: true\n")
    assert load_config(path, {}).quick_gelu is True
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "--root", ".", "--quick-gelu", "maybe"])
    # Compared by what it resolves to once the towers are built (train.py), not as written.
    old = TrainConfig(root=Path("/d")).model_dump(mode="json")
    assert recipe_changes(old, TrainConfig(root=Path("/d"), quick_gelu=True)) == {}


@pytest.mark.parametrize("name", sorted(p.name for p in CONFIGS.glob("*.yaml")))
def test_shipped_configs_load(name: str) -> None:
    cfg = load_config(CONFIGS / name, {"root": Path(".")})
    if "reference" in name:
        assert (cfg.adam_eps, cfg.weight_decay, cfg.bias_lr_mult) == (1e-3, 4e-5, 2.0)
        assert (cfg.lambda_mim, cfg.mask_block, cfg.mim_width, cfg.lr_step) == (
            10,
            2,
            None,
            "epoch",
        )
        assert (cfg.bias_lr_mode, cfg.new_module_lr_scope) == ("override", "reference")
        assert (cfg.mim_mask, cfg.mim_decoder) == ("token", "reference")
        assert (cfg.resize_interpolation, cfg.random_erasing_fill) == ("bilinear", "mean")
        assert cfg.uses("gi2id")
    elif name.startswith("vfe-tps"):
        assert (cfg.adam_eps, cfg.weight_decay, cfg.lambda_mim, cfg.grad_clip) == (1e-8, 0, 1, None)
        assert (cfg.bias_lr_mode, cfg.new_module_lr_scope) == ("multiply", "decoder")
        assert (cfg.mim_mask, cfg.mim_decoder, cfg.resize_interpolation) == (
            "zero",
            "paper",
            "bicubic",
        )
        assert not cfg.uses("gi2id")
