"""TG-MIM decoder: masked image tokens query the caption's tokens; a pixel head redraws the image.

Training only; it is never part of a bundle. The queries are image tokens and the keys/values are
text tokens (method.md §TG-MIM), so the reconstruction has to use the caption.
"""

from __future__ import annotations

import torch
from torch import nn


class TextGuidedDecoder(nn.Module):
    def __init__(
        self,
        width: int,
        text_width: int,
        grid: tuple[int, int],
        patch_size: int,
        heads: int = 8,
        layers: int = 4,
        channels: int = 3,
    ) -> None:
        super().__init__()
        self.grid = grid
        # kdim/vdim map the text width (512 for ViT-B-16) inside the attention layer.
        self.cross_attn = nn.MultiheadAttention(
            width, heads, kdim=text_width, vdim=text_width, batch_first=True
        )
        self.cross_norm = nn.LayerNorm(width)
        layer = nn.TransformerEncoderLayer(
            width, heads, dim_feedforward=4 * width, activation="gelu", batch_first=True
        )
        self.blocks = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.head = nn.Conv2d(width, patch_size * patch_size * channels, kernel_size=1)
        self.unpatchify = nn.PixelShuffle(patch_size)

    def forward(
        self, image_tokens: torch.Tensor, text_tokens: torch.Tensor, text_padding: torch.Tensor
    ) -> torch.Tensor:
        """image_tokens (B, 1+N, width), text_tokens (B, L, text_width), text_padding (B, L).

        Returns the reconstructed image (B, channels, H, W) in normalised pixel space.
        """
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
