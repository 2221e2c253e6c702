"""The two towers as stand-alone modules: what the torch runtime runs and what ONNX export traces.

open_clip's ``CLIP.encode_text`` always runs the full context (77 positions for CLIP), though a
CUHK-PEDES caption needs about 30. Under the causal mask a position only attends to positions
before it, and the pooled feature is read at the end-of-text token, so positions after the
longest caption's end-of-text token cannot change any output of the batch: :class:`TextTower`
takes token ids cut to that length (:func:`trimmed_length`) and slices the positional embedding
and the mask to match. Run on the full 77 columns it computes exactly what open_clip computes.

Both towers return L2-normalised features, so every runtime hands the same kind of vector on.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from bundle.format import BundleError

# Pooling that reads one token's feature; only then is cutting the tail exact.
TRIMMABLE_POOLS = ("argmax", "eos")


class TextTower(nn.Module):
    """Token ids ``[batch, length ≤ context]`` → L2-normalised text features ``[batch, dim]``."""

    def __init__(self, clip: nn.Module) -> None:
        super().__init__()
        for name in ("token_embedding", "positional_embedding", "transformer", "ln_final"):
            if not hasattr(clip, name):
                raise BundleError(f"the text tower of {type(clip).__name__} is not CLIP's")
        self.token_embedding = clip.token_embedding
        self.positional_embedding = clip.positional_embedding
        self.transformer = clip.transformer
        self.ln_final = clip.ln_final
        self.text_projection = clip.text_projection
        self.pool_type: str = clip.text_pool_type
        self.eos_id: int | None = getattr(clip, "text_eos_id", None)
        mask = clip.attn_mask
        self.causal = mask is not None
        self.register_buffer("attn_mask", mask if mask is not None else torch.zeros(0, 0), False)
        self.cast_dtype = clip.transformer.get_cast_dtype()

    @property
    def trimmable(self) -> bool:
        return self.causal and self.pool_type in TRIMMABLE_POOLS

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self._hidden(tokens)
        return self._project(
            x[torch.arange(x.shape[0], device=x.device), self.pooled_position(tokens)]
        )

    def with_tokens(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(normalised features, every output token after ln_final, padding mask True after
        the pooled end-of-text position): what the part head reads besides the features."""
        hidden = self._hidden(tokens)
        pooled = self.pooled_position(tokens)
        features = self._project(
            hidden[torch.arange(hidden.shape[0], device=hidden.device), pooled]
        )
        positions = torch.arange(tokens.shape[1], device=tokens.device).unsqueeze(0)
        return features, hidden, positions > pooled.unsqueeze(1)

    def _hidden(self, tokens: torch.Tensor) -> torch.Tensor:
        length = tokens.shape[1]
        x = self.token_embedding(tokens).to(self.cast_dtype)
        x = x + self.positional_embedding[:length].to(self.cast_dtype)
        mask = self.attn_mask[:length, :length] if self.causal else None
        return self.ln_final(self.transformer(x, attn_mask=mask))

    def _project(self, x: torch.Tensor) -> torch.Tensor:
        if isinstance(self.text_projection, nn.Linear):
            x = self.text_projection(x)
        elif self.text_projection is not None:
            x = x @ self.text_projection
        return F.normalize(x.float(), dim=-1)

    def pooled_position(self, tokens: torch.Tensor) -> torch.Tensor:
        if self.pool_type == "argmax":  # CLIP: the end-of-text token has the highest id
            return tokens.argmax(dim=-1)
        if self.pool_type == "eos":
            return (tokens == self.eos_id).int().argmax(dim=-1)
        if self.pool_type == "first":
            return torch.zeros(tokens.shape[0], dtype=torch.long, device=tokens.device)
        if self.pool_type == "last":
            return torch.full((tokens.shape[0],), tokens.shape[1] - 1, device=tokens.device)
        raise BundleError(f"text pooling {self.pool_type!r} is not supported")


class ImageTower(nn.Module):
    """Preprocessed images ``[batch, 3, H, W]`` → L2-normalised image features ``[batch, dim]``."""

    def __init__(self, clip: nn.Module) -> None:
        super().__init__()
        self.visual = clip.visual

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.visual(images).float(), dim=-1)

    def with_tokens(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(normalised features, patch tokens after ln_post with CLS dropped): the part head
        reads the tokens. Plain ViT only (CLS pooling, ln_post before pooling), as trained."""
        visual = self.visual
        plain = (
            getattr(visual, "attn_pool", None) is None
            and not visual.final_ln_after_pool
            and getattr(visual, "pool_type", "tok") == "tok"
        )
        if not plain:  # the features below are the CLS token's: any other pooling differs
            raise BundleError("parts mode needs a plain ViT image tower (CLS-token pooling)")
        x = visual.ln_post(visual.transformer(visual._embeds(images)))
        pooled = x[:, 0] @ visual.proj if visual.proj is not None else x[:, 0]
        return F.normalize(pooled.float(), dim=-1), x[:, 1:]


def trimmed_length(tokens: np.ndarray, pool_type: str, eos_id: int | None = None) -> int:
    """Columns the batch needs: up to and including its last end-of-text token.

    Exact only for a causal tower pooled at one token (``TRIMMABLE_POOLS``); callers check
    :attr:`TextTower.trimmable` (recorded in the ONNX export as ``text_trimmable``).
    """
    if tokens.shape[0] == 0:
        return tokens.shape[1]
    if pool_type == "argmax":
        ends = tokens.argmax(axis=1)
    elif pool_type == "eos":
        ends = (tokens == eos_id).argmax(axis=1)
    else:
        return tokens.shape[1]
    return int(ends.max()) + 1
