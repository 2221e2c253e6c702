"""Adam parameter groups of the recipe: new modules, biases and norms get their own rates."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from training.config import TrainConfig
from training.model.vfe_tps import VFETPS

_NORMS = (nn.LayerNorm, nn.GroupNorm, nn.modules.batchnorm._BatchNorm)


def parameter_groups(core: VFETPS, cfg: TrainConfig) -> list[dict[str, Any]]:
    """Groups named ``clip``/``new`` (the towers / the TG-MIM decoder), split further only where
    a setting treats biases or norms differently: ``_bias`` (``bias_lr_mult``, or exempt from
    decay), ``_norm`` (exempt from decay). The temperature is never decayed."""
    new_ids = {id(p) for p in core.new_module_parameters()}
    norm_ids = {id(p) for m in core.modules() if isinstance(m, _NORMS) for p in m.parameters()}
    split_bias = cfg.bias_lr_mult != 1.0 or ("bias" in cfg.no_decay and cfg.weight_decay > 0)
    split_norm = "norm" in cfg.no_decay and cfg.weight_decay > 0
    groups: dict[str, dict[str, Any]] = {}
    for name, param in core.named_parameters():
        if not param.requires_grad:
            continue
        is_new = id(param) in new_ids
        lr = cfg.lr * (cfg.new_module_lr_mult if is_new else 1.0)
        decay = cfg.weight_decay
        label = "new" if is_new else "clip"
        # The reference code's test: any parameter whose name holds "bias" (in_proj_bias too).
        if split_bias and "bias" in name.rsplit(".", 1)[-1]:
            label += "_bias"
            lr *= cfg.bias_lr_mult
            decay = 0.0 if "bias" in cfg.no_decay else decay
        elif split_norm and id(param) in norm_ids:
            label += "_norm"
            decay = 0.0
        if param.dim() == 0:  # the learnable temperature
            decay = 0.0
            label += "_scalar"
        group = groups.setdefault(label, {"params": [], "lr": lr, "weight_decay": decay})
        group["params"].append(param)
    return [{"name": label, **group} for label, group in groups.items()]


def build_optimizer(core: VFETPS, cfg: TrainConfig) -> torch.optim.Optimizer:
    return torch.optim.Adam(
        parameter_groups(core, cfg),
        lr=cfg.lr,
        betas=tuple(cfg.adam_betas),
        eps=cfg.adam_eps,
        weight_decay=cfg.weight_decay,
    )
