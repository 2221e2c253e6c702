"""Parts-mode encoding (docs/parts.md): the towers' token outputs read by the bundle's part head.

Images give the gallery vector G = [ĝ; ĉ^1..M; f̂^1..K]; texts give unit blocks in the same
layout, which :meth:`PartsLayout.weigh` turns into the query Q (bundle/parts_layout.py). Torch
runtime only: the ONNX graphs export the towers' pooled features, not their tokens.

Trimming the text stays exact: under the causal mask a token's output depends only on the tokens
before it, and the head masks every position after the end-of-text token as padding.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bundle.format import PARTS_FILE, BundleError, BundleMeta
from bundle.parts_head import PartEmbeddings, PartsHead
from bundle.parts_layout import PartsLayout, check_weights
from bundle.runtimes import RUNTIME_ENV, EncoderRuntime


def parts_config(head: PartsHead, weights: dict[str, float] | None = None) -> dict[str, Any]:
    """What bundle.json records under "parts": enough to rebuild the head, and the default
    query weights."""
    return {
        "image_width": head.image_in.in_features,
        "text_width": head.text_in.in_features,
        "grid": list(head.grid),
        "width": head.image_in.out_features,
        "embed_dim": head.out.out_features,
        "coarse_tokens": head.coarse_tokens,
        "stripes": head.stripes,
        "heads": head.encoder.self_attn.num_heads,
        "pool": head.pool,
        "weights": check_weights(weights),
    }


def build_head(cfg: dict[str, Any]) -> PartsHead:
    return PartsHead(
        int(cfg["image_width"]),
        int(cfg["text_width"]),
        (int(cfg["grid"][0]), int(cfg["grid"][1])),
        width=int(cfg["width"]),
        embed_dim=int(cfg["embed_dim"]),
        coarse_tokens=int(cfg["coarse_tokens"]),
        stripes=int(cfg["stripes"]),
        heads=int(cfg["heads"]),
        pool=str(cfg["pool"]),
    )


def layout_of(meta: BundleMeta) -> PartsLayout:
    """The parts layout of a parts bundle, read from its metadata (the weights stay unloaded)."""
    cfg = meta.extra.get("parts")
    if cfg is None:
        raise BundleError(
            "the bundle holds no part head: export it with --parts-export true "
            "(training with the parts loss), or use the bundle in global mode"
        )
    return PartsLayout(
        meta.embed_dim, int(cfg["coarse_tokens"]), int(cfg["stripes"]), int(cfg["embed_dim"])
    )


def check_parts_runtime(runtime: str) -> None:
    """Parts mode needs the towers' tokens, which only the torch runtime gives."""
    if runtime != "torch":
        raise BundleError(
            f"parts mode runs on the torch runtime only, not {runtime}: "
            f"set {RUNTIME_ENV}=torch (or --runtime torch)"
        )


class PartsEncoder:
    """The part head on top of a torch runtime's towers."""

    def __init__(self, bundle_dir: Path, meta: BundleMeta, runtime: EncoderRuntime) -> None:
        from safetensors.torch import load_file

        try:
            self.layout = layout_of(meta)
        except BundleError as err:
            raise BundleError(f"{bundle_dir}: {err}") from None
        check_parts_runtime(runtime.name)
        cfg = meta.extra["parts"]
        self.runtime = runtime
        self.weights = check_weights(cfg.get("weights"))
        head = build_head(cfg)
        try:
            head.load_state_dict(load_file(str(Path(bundle_dir) / PARTS_FILE)))
        except RuntimeError as err:
            raise BundleError(f"{bundle_dir}: the part head does not load: {err}") from err
        self.head = head.eval().to(runtime.device)

    def _run(
        self, fn: Callable[..., tuple[torch.Tensor, PartEmbeddings]], *args: torch.Tensor
    ) -> np.ndarray:
        g, parts = self.runtime.run(fn, *args)  # the towers' own device and precision
        return self.layout.join(
            g.float().cpu().numpy(),
            parts.coarse.float().cpu().numpy(),
            parts.fine.float().cpu().numpy(),
        )

    def images(self, images: torch.Tensor) -> np.ndarray:
        """Preprocessed images → gallery vectors G (unit blocks, not renormalised)."""

        def run(x: torch.Tensor) -> tuple[torch.Tensor, PartEmbeddings]:
            g, patches = self.runtime.image.with_tokens(x)
            return g, self.head.image(patches)

        return self._run(run, images)

    def text_blocks(self, tokens: np.ndarray) -> np.ndarray:
        """Token ids → unit blocks [ĝ; ĉ; f̂] of the captions, before any weighting."""

        def run(t: torch.Tensor) -> tuple[torch.Tensor, PartEmbeddings]:
            g, hidden, padding = self.runtime.text.with_tokens(t)
            return g, self.head.text(hidden, padding)

        return self._run(run, torch.from_numpy(np.ascontiguousarray(tokens, np.int64)))

    def query(self, tokens: np.ndarray, weights: dict[str, float] | None = None) -> np.ndarray:
        """Token ids → queries Q weighted by ``weights``; names left out keep the bundle's."""
        return self.layout.weigh(self.text_blocks(tokens), {**self.weights, **(weights or {})})
