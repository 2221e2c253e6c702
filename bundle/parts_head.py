"""Part-level head (the second seed paper, as docs/parts.md decides it): coarse embeddings read by
learnable tokens shared by both modalities, fine embeddings from horizontal image stripes and the
text tokens paired with them. Here, not in training, because a parts bundle carries the head
to inference (the encoders build it); its training-only classifiers stay in training.

Inputs are the towers' token outputs before their projections: 192 image patch tokens (768-d,
CLS dropped, the clean pass only) and every text token (512-d) with its padding mask. The
encoder layer, the decoder layer and the output projection are shared by both modalities; every
output is projected to ``embed_dim`` and L2-normalised.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn


@dataclass
class PartEmbeddings:
    coarse: Tensor  # (B, M, embed_dim), unit rows
    fine: Tensor  # (B, K, embed_dim), unit rows


def stripe_pool(grid: Tensor, stripes: int, pool: str = "max") -> Tensor:
    """(B, H, W, D) token grid → (B, stripes, D): rows cut into ``stripes`` equal bands, pooled."""
    b, h, w, d = grid.shape
    if h % stripes:
        raise ValueError(f"{stripes} stripes do not divide the {h} patch rows")
    bands = grid.reshape(b, stripes, (h // stripes) * w, d)
    if pool == "max":
        return bands.amax(dim=2)
    if pool == "avg":
        return bands.mean(dim=2)
    raise ValueError(f"unknown stripe pooling {pool!r}: use max or avg")


class PartsHead(nn.Module):
    def __init__(
        self,
        image_width: int,
        text_width: int,
        grid: tuple[int, int],
        width: int = 512,
        embed_dim: int = 256,
        coarse_tokens: int = 4,
        stripes: int = 6,
        heads: int = 8,
        pool: str = "max",
    ) -> None:
        super().__init__()
        if grid[0] % stripes:
            raise ValueError(f"parts_stripes {stripes} must divide the {grid[0]} patch rows")
        self.grid, self.stripes, self.pool = grid, stripes, pool
        self.image_in = nn.Linear(image_width, width)
        self.text_in = nn.Linear(text_width, width)
        self.encoder = nn.TransformerEncoderLayer(
            width, heads, 4 * width, dropout=0.0, activation="gelu", batch_first=True
        )
        self.decoder = nn.TransformerDecoderLayer(
            width, heads, 4 * width, dropout=0.0, activation="gelu", batch_first=True
        )
        self.coarse_queries = nn.Parameter(torch.randn(coarse_tokens, width) * width**-0.5)
        self.fine_queries = nn.Parameter(torch.randn(stripes, width) * width**-0.5)
        self.stripe_norm = nn.LayerNorm(width)
        self.stripe_proj = nn.Linear(width, width)
        self.out = nn.Linear(width, embed_dim)

    @property
    def coarse_tokens(self) -> int:
        return self.coarse_queries.shape[0]

    def _decode(self, queries: Tensor, memory: Tensor, padding: Tensor | None) -> Tensor:
        q = queries.unsqueeze(0).expand(memory.shape[0], -1, -1)
        return self.decoder(q, memory, memory_key_padding_mask=padding)

    def _embed(self, x: Tensor) -> Tensor:
        return F.normalize(self.out(x).float(), dim=-1)

    def image(self, patch_tokens: Tensor) -> PartEmbeddings:
        """patch_tokens (B, N, image_width), N = grid rows × columns, row-major, no CLS."""
        memory = self.encoder(self.image_in(patch_tokens))
        coarse = self._decode(self.coarse_queries, memory, None)
        gh, gw = self.grid
        # Stripes pool the encoder's output, after its self-attention (parts.md leaves it open):
        # the text's fine tokens read that same encoded memory, so both fine embeddings come out
        # of the one shared encoder; the ViT tokens are whole-image mixtures already, so pooling
        # before it would not make stripes more local.
        bands = stripe_pool(memory.reshape(memory.shape[0], gh, gw, -1), self.stripes, self.pool)
        fine = self.stripe_proj(self.stripe_norm(bands))
        return PartEmbeddings(self._embed(coarse), self._embed(fine))

    def text(self, tokens: Tensor, padding: Tensor) -> PartEmbeddings:
        """tokens (B, L, text_width); padding (B, L) True after the end-of-text token."""
        memory = self.encoder(self.text_in(tokens), src_key_padding_mask=padding)
        coarse = self._decode(self.coarse_queries, memory, padding)
        fine = self._decode(self.fine_queries, memory, padding)
        return PartEmbeddings(self._embed(coarse), self._embed(fine))
