"""Adam parameter groups of the recipe: new modules, biases and norms get their own rates."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from training.config import TrainConfig
from training.model.vfe_tps import VFETPS

_NORMS = (nn.LayerNorm, nn.GroupNorm, nn.modules.batchnorm._BatchNorm)


def parameter_groups(core: VFETPS, cfg: TrainConfig) -> list[dict[str, Any]]:
    """Groups named ``clip``/``new`` (the towers / modules CLIP does not have), ``new_base`` for
    new modules outside ``new_module_lr_mult``'s scope, split further only where a setting
    treats biases or norms differently: ``_bias`` (``bias_lr_mult``, or exempt from decay),
    ``_norm`` (exempt from decay). The temperature is never decayed.

    A bias's rate is its module's rate × ``bias_lr_mult`` (``bias_lr_mode multiply``), or
    lr × ``bias_lr_mult`` in place of the module's factor (``override``: the reference code,
    whose ``if "bias" in key`` comes after its 5× for ``cross`` and before its 5× for
    ``classifier``, so only the classifiers' biases keep 5×)."""
    new_ids = {id(p) for p in core.new_module_parameters()}
    boosted_ids = {id(p) for p in core.boosted_parameters(cfg.new_module_lr_scope)}
    classifier_ids = {id(p) for p in core.classifier_parameters()}
    norm_ids = {id(p) for m in core.modules() if isinstance(m, _NORMS) for p in m.parameters()}
    split_bias = (
        cfg.bias_lr_mult != 1.0
        or cfg.bias_lr_mode == "override"
        or ("bias" in cfg.no_decay and cfg.weight_decay > 0)
    )
    split_norm = "norm" in cfg.no_decay and cfg.weight_decay > 0
    groups: dict[str, dict[str, Any]] = {}
    for name, param in core.named_parameters():
        if not param.requires_grad:
            continue
        is_new, boosted = id(param) in new_ids, id(param) in boosted_ids
        factor = cfg.new_module_lr_mult if boosted else 1.0
        decay = cfg.weight_decay
        label = ("new" if boosted else "new_base") if is_new else "clip"
        # The reference code's test: any parameter whose name holds "bias" (in_proj_bias too).
        if split_bias and "bias" in name.rsplit(".", 1)[-1]:
            if cfg.bias_lr_mode == "multiply":
                factor *= cfg.bias_lr_mult
            elif id(param) in classifier_ids:
                label += "_classifier"  # keeps its module's factor, as in the reference
            else:
                factor = cfg.bias_lr_mult
            label += "_bias"
            decay = 0.0 if "bias" in cfg.no_decay else decay
        elif split_norm and id(param) in norm_ids:
            label += "_norm"
            decay = 0.0
        if param.dim() == 0:  # the learnable temperature
            decay = 0.0
            label += "_scalar"
        lr = cfg.lr * factor
        group = groups.setdefault(label, {"params": [], "lr": lr, "weight_decay": decay})
        if group["lr"] != lr or group["weight_decay"] != decay:
            raise AssertionError(f"parameter group {label} would mix rates ({name})")
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
