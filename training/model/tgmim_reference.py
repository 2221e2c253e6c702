"""The reference code's TG-MIM decoder (zhangweifeng1218/VFE_TPS, ``model/build.py``).

Its tokens arrive already projected by CLIP's pretrained ``visual.proj`` (text tokens by
``text_projection``): the caller applies the towers' own projections, so the decoder starts from
the pretrained map and trains it through the towers. Then, as ``cross_former_compute``:
pre-LN cross-attention whose output replaces the tokens (no residual), CLIP residual blocks with
QuickGELU, ``ln_post``, and a 1×1 convolution (xavier-initialised, zero bias) + pixel shuffle.

One deviation, kept on purpose: the reference's active line attends the masked image to itself
(its text cross-attention is commented out); here image tokens query the caption's tokens, as
the paper and docs/method.md specify, with the padding after the end-of-text token masked out.
"""

from __future__ import annotations

import torch
from torch import nn

from bundle.openclip_import import import_open_clip


class ReferenceDecoder(nn.Module):
    """Names follow the reference's roles: ``cross_attn`` and ``blocks`` are its
    ``cross_attention_image`` / ``cross_modal_transformer_image`` (the only decoder parts its
    5× learning rate reaches), ``ln_pre_i``/``ln_pre_t``/``ln_post`` and ``head`` the rest."""

    def __init__(
        self, width: int, grid: tuple[int, int], patch_size: int, heads: int, layers: int
    ) -> None:
        super().__init__()
        open_clip = import_open_clip()
        transformer = open_clip.transformer
        self.grid = grid
        self.cross_attn = nn.MultiheadAttention(width, heads, batch_first=True)
        self.blocks = transformer.Transformer(
            width, layers, heads, act_layer=transformer.QuickGELU, batch_first=True
        )
        self.ln_pre_i = transformer.LayerNorm(width)
        self.ln_pre_t = transformer.LayerNorm(width)
        self.ln_post = transformer.LayerNorm(width)
        self.head = nn.Conv2d(width, patch_size * patch_size * 3, kernel_size=1)
        self.unpatchify = nn.PixelShuffle(patch_size)
        self._init(width, layers)

    def _init(self, width: int, layers: int) -> None:
        """The reference's ``get_cross`` std's and its xavier head."""
        attn_std = width**-0.5
        proj_std = attn_std * (2 * layers) ** -0.5
        fc_std = (2 * width) ** -0.5
        for block in self.blocks.resblocks:
            nn.init.normal_(block.attn.in_proj_weight, std=attn_std)
            nn.init.normal_(block.attn.out_proj.weight, std=proj_std)
            nn.init.normal_(block.mlp.c_fc.weight, std=fc_std)
            nn.init.normal_(block.mlp.c_proj.weight, std=proj_std)
        nn.init.normal_(self.cross_attn.in_proj_weight, std=attn_std)
        nn.init.normal_(self.cross_attn.out_proj.weight, std=proj_std)
        nn.init.xavier_uniform_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(
        self, image_tokens: torch.Tensor, text_tokens: torch.Tensor, text_padding: torch.Tensor
    ) -> torch.Tensor:
        """image_tokens (B, 1+N, width) and text_tokens (B, L, width), both projected;
        text_padding (B, L). Returns the image (B, 3, H, W) in normalised pixel space."""
        keys = self.ln_pre_t(text_tokens)
        x, _ = self.cross_attn(
            self.ln_pre_i(image_tokens),
            keys,
            keys,
            key_padding_mask=text_padding,
            need_weights=False,
        )
        x = self.ln_post(self.blocks(x))
        patches = x[:, 1:]  # drop CLS
        b, _, d = patches.shape
        gh, gw = self.grid
        fmap = patches.transpose(1, 2).reshape(b, d, gh, gw)
        return self.unpatchify(self.head(fmap))

    def boosted_parameters(self) -> list[nn.Parameter]:
        """What the reference's 5× reaches (names holding ``cross``)."""
        return [*self.cross_attn.parameters(), *self.blocks.parameters()]
