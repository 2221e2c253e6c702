"""Adam groups of the paper and reference recipes."""

from __future__ import annotations

from pathlib import Path

import pytest

from training.config import TrainConfig, load_config
from training.model.towers import TowerSpec, build_towers
from training.model.vfe_tps import VFETPS
from training.optim import build_optimizer

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def _core(cfg: TrainConfig) -> VFETPS:
    clip, _ = build_towers(TowerSpec("tiny"))
    return VFETPS(
        clip,
        use_mim=cfg.uses("tgmim"),
        mim_layers=1,
        mim_width=cfg.mim_width,
        mim_dropout=cfg.mim_dropout,
        learnable_tau=cfg.learnable_tau,
        mim_decoder=cfg.mim_decoder,
        mask_token=cfg.mim_mask == "token",
        gi2id_classes=7 if cfg.uses("gi2id") else None,
    )


def _groups(cfg: TrainConfig, core: VFETPS | None = None) -> dict[str, dict]:
    core = core or _core(cfg)
    optimizer = build_optimizer(core, cfg)
    groups = {g["name"]: g for g in optimizer.param_groups}
    counted = sum(len(g["params"]) for g in optimizer.param_groups)
    assert counted == sum(1 for p in core.parameters() if p.requires_grad)
    return groups


def _rate_of(core: VFETPS, cfg: TrainConfig) -> dict[str, tuple[float, float]]:
    """Parameter name → (lr, weight decay) as the optimizer holds them."""
    ids = {}
    for group in build_optimizer(core, cfg).param_groups:
        for param in group["params"]:
            ids[id(param)] = (group["lr"], group["weight_decay"])
    return {name: ids[id(p)] for name, p in core.named_parameters() if p.requires_grad}


# Our module names → the reference code's (model/build.py), for its solver rule below.
REFERENCE_NAMES = {
    "clip.": "base_model.",
    "mim.cross_attn.": "cross_attention_image.",
    "mim.blocks.": "cross_modal_transformer_image.",
    "mim.ln_pre_i.": "image_ln_pre_i.",
    "mim.ln_pre_t.": "image_ln_pre_t.",
    "mim.ln_post.": "image_ln_post.",
    "mim.head.": "decoder.0.",
    "mask_token": "mask_token",
    "classifier.": "classifier.",
}


def _reference_rule(key: str, lr=1e-5, lr_factor=5.0, bias_lr_factor=2.0, wd=4e-5, wd_bias=0.0):
    """solver/build.py's build_optimizer of zhangweifeng1218/VFE_TPS, line for line."""
    weight_decay = wd
    if "cross" in key:
        lr = lr * lr_factor
    if "bias" in key:
        lr = 1e-5 * bias_lr_factor
        weight_decay = wd_bias
    if "classifier" in key or "mlm_head" in key:
        lr = 1e-5 * lr_factor
    return lr, weight_decay


def test_paper_recipe_has_towers_and_new_modules_only() -> None:
    cfg = load_config(CONFIGS / "vfe-tps-cuhk.yaml", {"root": Path("."), "model": "tiny"})
    groups = _groups(cfg)
    assert set(groups) == {"clip", "new"}
    assert groups["clip"]["lr"] == 1e-5 and groups["new"]["lr"] == pytest.approx(5e-5)
    assert groups["clip"]["eps"] == 1e-8 and groups["clip"]["weight_decay"] == 0


def test_reference_recipe_gives_every_parameter_the_reference_codes_rate() -> None:
    cfg = load_config(CONFIGS / "vfe-tps-cuhk-reference.yaml", {"root": Path("."), "model": "tiny"})
    core = _core(cfg)
    rates = _rate_of(core, cfg)
    checked = 0
    for name, (lr, decay) in rates.items():
        prefix = next(p for p in REFERENCE_NAMES if name.startswith(p))
        reference = _reference_rule(REFERENCE_NAMES[prefix] + name[len(prefix) :])
        assert lr == pytest.approx(reference[0]) and decay == reference[1], name
        checked += 1
    assert checked == len(rates) > 100  # the fixed temperature is not trained
    # The cases that tell the modes apart, spelled out.
    assert rates["mim.cross_attn.in_proj_weight"][0] == pytest.approx(5e-5)
    assert rates["mim.cross_attn.in_proj_bias"][0] == pytest.approx(2e-5)  # 2x replaces 5x
    assert rates["mim.head.weight"][0] == pytest.approx(1e-5)  # outside the 5x scope
    assert rates["mask_token"][0] == pytest.approx(1e-5)
    assert rates["classifier.bias"] == (pytest.approx(5e-5), 0.0)  # 5x set after the bias rule
    groups = _groups(cfg, core)
    assert groups["clip_bias"]["lr"] == pytest.approx(2e-5)
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


def test_multiplying_bias_mode_and_decoder_scope_boost_the_whole_decoder() -> None:
    cfg = load_config(
        CONFIGS / "vfe-tps-cuhk-reference.yaml",
        {"root": Path("."), "model": "tiny", "bias_lr_mode": "multiply"},
    )
    reference_scope = _rate_of(_core(cfg), cfg)
    assert reference_scope["mim.cross_attn.in_proj_bias"][0] == pytest.approx(1e-4)  # 5 × 2
    assert reference_scope["mim.head.bias"][0] == pytest.approx(2e-5)  # 1 × 2
    decoder_scope = cfg.model_copy(update={"new_module_lr_scope": "decoder"})
    rates = _rate_of(_core(decoder_scope), decoder_scope)
    assert rates["mim.head.weight"][0] == pytest.approx(5e-5)
    assert rates["mask_token"][0] == pytest.approx(5e-5)
    assert rates["mim.ln_post.bias"][0] == pytest.approx(1e-4)
    assert rates["clip.visual.proj"][0] == pytest.approx(1e-5)
    # Overriding with the whole decoder in scope: its biases drop to 2x, its weights stay 5x.
    both = decoder_scope.model_copy(update={"bias_lr_mode": "override"})
    rates = _rate_of(_core(both), both)
    assert rates["mim.head.weight"][0] == pytest.approx(5e-5)
    assert rates["mim.head.bias"][0] == pytest.approx(2e-5)
