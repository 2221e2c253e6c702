"""Adam groups of the paper and reference recipes."""

from __future__ import annotations

from pathlib import Path

import pytest

from training.config import TrainConfig, load_config
from training.model.towers import TowerSpec, build_towers
from training.model.vfe_tps import VFETPS
from training.optim import build_optimizer

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def _groups(cfg: TrainConfig) -> dict[str, dict]:
    clip, _ = build_towers(TowerSpec("tiny"))
    core = VFETPS(clip, mim_layers=1, mim_width=cfg.mim_width, learnable_tau=cfg.learnable_tau)
    optimizer = build_optimizer(core, cfg)
    groups = {g["name"]: g for g in optimizer.param_groups}
    counted = sum(len(g["params"]) for g in optimizer.param_groups)
    assert counted == sum(1 for p in core.parameters() if p.requires_grad)
    return groups


def test_paper_recipe_has_towers_and_new_modules_only() -> None:
    cfg = load_config(CONFIGS / "vfe-tps-cuhk.yaml", {"root": Path("."), "model": "tiny"})
    groups = _groups(cfg)
    assert set(groups) == {"clip", "new"}
    assert groups["clip"]["lr"] == 1e-5 and groups["new"]["lr"] == pytest.approx(5e-5)
    assert groups["clip"]["eps"] == 1e-8 and groups["clip"]["weight_decay"] == 0


def test_reference_recipe_doubles_bias_rates_and_exempts_them_from_decay() -> None:
    cfg = load_config(CONFIGS / "vfe-tps-cuhk-reference.yaml", {"root": Path("."), "model": "tiny"})
    groups = _groups(cfg)
    assert set(groups) == {"clip", "clip_bias", "new", "new_bias"}
    assert groups["clip_bias"]["lr"] == pytest.approx(2e-5)
    assert groups["new_bias"]["lr"] == pytest.approx(1e-4)
    assert groups["clip"]["weight_decay"] == 4e-5 and groups["clip_bias"]["weight_decay"] == 0
    assert groups["clip"]["eps"] == 1e-3
    # LayerNorm gains keep their decay in the reference code; only names holding "bias" move.
    assert all(p.dim() > 0 for p in groups["clip"]["params"])
    assert all(p.dim() == 1 for p in groups["clip_bias"]["params"])


def test_norms_exempt_on_request_and_the_temperature_is_never_decayed() -> None:
    cfg = TrainConfig(
        root=Path("."), weight_decay=0.1, no_decay="norm", learnable_tau=True, losses="cmpm"
    )
    groups = _groups(cfg)
    assert groups["clip_norm"]["weight_decay"] == 0 and groups["clip"]["weight_decay"] == 0.1
    assert groups["clip_scalar"]["weight_decay"] == 0
