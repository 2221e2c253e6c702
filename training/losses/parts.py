"""Losses of the part-level head (docs/parts.md): identity per slot, a ranking loss on the coarse
embeddings and the commonality-based margin ranking loss (CMR) on the fine ones.

S(a, b) pairs image a with text b; the positive of a is its own caption (works with any batch
sampler); negatives are items of other persons. Every hinge takes the hardest negative, in
both directions. All inputs are unit vectors; everything is computed in fp32, with autocast off
(as parts.md asks): under bf16 autocast κ and the similarities would otherwise come out bf16.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import ParamSpec

import torch
import torch.nn.functional as F
from torch import Tensor

_P = ParamSpec("_P")


def _fp32(loss: Callable[_P, Tensor]) -> Callable[_P, Tensor]:
    """Run ``loss`` with autocast off on its first tensor's device (its inputs go to float32)."""

    @functools.wraps(loss)
    def run(*args: _P.args, **kwargs: _P.kwargs) -> Tensor:
        device = next(a.device.type for a in args if isinstance(a, Tensor))
        with torch.autocast(device_type=device, enabled=False):
            return loss(*args, **kwargs)

    return run


def _hardest_hinges(sim: Tensor, margin: Tensor | float, negatives: Tensor) -> Tensor:
    """Σ_a of max_{b∈N(a)} [m_ab + S(a,b) − S(a,a)]_+ and the same with S(b,a); (B,B) inputs."""
    positive = sim.diagonal().unsqueeze(1)
    margin = torch.as_tensor(margin, dtype=sim.dtype, device=sim.device)
    flipped = margin.T if margin.dim() == 2 else margin  # m_ab is symmetric; kept general
    image_to_text = F.relu(margin + sim - positive)  # row a, column b: S(a, b)
    text_to_image = F.relu(flipped + sim.T - positive)  # row a, column b: S(b, a)
    none = torch.zeros((), dtype=sim.dtype, device=sim.device)
    worst = [
        torch.where(negatives, hinge, none).amax(dim=1) for hinge in (image_to_text, text_to_image)
    ]
    return (worst[0] + worst[1]).sum()


def _negatives(person_ids: Tensor) -> Tensor:
    pids = person_ids.reshape(-1)
    return pids.unsqueeze(0) != pids.unsqueeze(1)


@_fp32
def coarse_ranking_loss(
    image_coarse: Tensor, text_coarse: Tensor, person_ids: Tensor, alpha: float = 0.2
) -> Tensor:
    """ℓ_R: S_c(a,b) = mean_m cos(c_v,a^m, c_t,b^m); hardest-negative hinge with margin α both
    ways, averaged over the B anchors. A batch of one person gives 0."""
    sim = torch.einsum("amd,bmd->ab", image_coarse.float(), text_coarse.float())
    sim = sim / image_coarse.shape[1]
    return _hardest_hinges(sim, alpha, _negatives(person_ids)) / sim.shape[0]


@_fp32
def commonality(image_fine: Tensor, text_fine: Tensor) -> Tensor:
    """κ^k_ab = clip(½[cos(f_v,a^k, f_v,b^k) + cos(f_t,a^k, f_t,b^k)], 0, 1), (K, B, B), no
    gradient: how alike part k of a and b are, in either modality."""
    v, t = image_fine.detach().float(), text_fine.detach().float()
    same_v = torch.einsum("akd,bkd->kab", v, v)
    same_t = torch.einsum("akd,bkd->kab", t, t)
    return (0.5 * (same_v + same_t)).clamp(0.0, 1.0)


@_fp32
def cmr_loss(
    image_fine: Tensor,
    text_fine: Tensor,
    person_ids: Tensor,
    margin_low: float = 0.1,
    margin_high: float = 0.3,
) -> Tensor:
    """ℓ_CMR: per part k, hardest-negative hinges with the margin m_lo + (m_hi − m_lo)(1 − κ^k_ab),
    so alike parts of different people are not pushed apart as hard; averaged over K·B."""
    v, t = image_fine.float(), text_fine.float()
    k_parts, batch = v.shape[1], v.shape[0]
    kappa = commonality(v, t)
    margins = margin_low + (margin_high - margin_low) * (1.0 - kappa)
    negatives = _negatives(person_ids)
    total = sum(_hardest_hinges(v[:, k] @ t[:, k].T, margins[k], negatives) for k in range(k_parts))
    return total / (k_parts * batch)


@_fp32
def slot_id_loss(logits: Tensor, labels: Tensor) -> Tensor:
    """Cross-entropy of every slot's identity logits (B, slots, N) against labels (B,), averaged."""
    b, slots, n = logits.shape
    return F.cross_entropy(logits.float().reshape(b * slots, n), labels.repeat_interleave(slots))
