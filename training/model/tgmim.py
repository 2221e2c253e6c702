"""TG-MIM decoder: masked image tokens query the caption's tokens; a pixel head redraws the image.

Training only; it is never part of a bundle. The queries are image tokens and the keys/values are
text tokens (method.md §TG-MIM), so the reconstruction has to use the caption.
"""

from __future__ import annotations

import torch
from torch import nn


class TextGuidedDecoder(nn.Module):
    """``image_width`` is the image tokens' width; ``width`` the decoder's (the paper: the same,
    768; the reference code: 512, reached here through a linear map of the image tokens)."""

    def __init__(
        self,
        image_width: int,
        text_width: int,
        grid: tuple[int, int],
        patch_size: int,
        heads: int = 8,
        layers: int = 4,
        channels: int = 3,
        width: int | None = None,
        dropout: float = 0.1,
        clip_init: bool = False,
    ) -> None:
        super().__init__()
        width = width or image_width
        self.grid = grid
        self.image_in = nn.Linear(image_width, width) if width != image_width else nn.Identity()
        # kdim/vdim map the text width (512 for ViT-B-16) inside the attention layer.
        self.cross_attn = nn.MultiheadAttention(
            width, heads, kdim=text_width, vdim=text_width, batch_first=True
        )
        self.cross_norm = nn.LayerNorm(width)
        layer = nn.TransformerEncoderLayer(
            width,
            heads,
            dim_feedforward=4 * width,
            dropout=dropout,
            activation="gelu",
            batch_first=True,
        )
        self.blocks = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.head = nn.Conv2d(width, patch_size * patch_size * channels, kernel_size=1)
        self.unpatchify = nn.PixelShuffle(patch_size)
        if clip_init:
            self._clip_init(width, layers)

    def _clip_init(self, width: int, layers: int) -> None:
        """The std's CLIP (and the reference code) give attention, projections and MLPs."""
        attn_std = width**-0.5
        proj_std = attn_std * (2 * layers) ** -0.5
        fc_std = (2 * width) ** -0.5
        attentions = [self.cross_attn] + [block.self_attn for block in self.blocks.layers]
        for attn in attentions:
            for name in ("in_proj_weight", "q_proj_weight", "k_proj_weight", "v_proj_weight"):
                weight = getattr(attn, name, None)
                if weight is not None:
                    nn.init.normal_(weight, std=attn_std)
            nn.init.normal_(attn.out_proj.weight, std=proj_std)
        for block in self.blocks.layers:
            nn.init.normal_(block.linear1.weight, std=fc_std)
            nn.init.normal_(block.linear2.weight, std=proj_std)

    def forward(
        self, image_tokens: torch.Tensor, text_tokens: torch.Tensor, text_padding: torch.Tensor
    ) -> torch.Tensor:
        """image_tokens (B, 1+N, width), text_tokens (B, L, text_width), text_padding (B, L).

        Returns the reconstructed image (B, channels, H, W) in normalised pixel space.
        """
        image_tokens = self.image_in(image_tokens)
        attended, _ = self.cross_attn(
            image_tokens,
            text_tokens,
            text_tokens,
            key_padding_mask=text_padding,
            need_weights=False,
        )
        x = self.cross_norm(image_tokens + attended)
        x = self.blocks(x)
        patches = x[:, 1:]  # drop CLS
        b, _, d = patches.shape
        gh, gw = self.grid
        fmap = patches.transpose(1, 2).reshape(b, d, gh, gw)
        return self.unpatchify(self.head(fmap))
