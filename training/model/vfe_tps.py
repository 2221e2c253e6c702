"""VFE-TPS: the two open_clip towers (kept for inference) and the TG-MIM decoder (training only)."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from bundle.openclip_import import import_open_clip
from bundle.parts_head import PartEmbeddings, PartsHead
from training.model.tgmim import TextGuidedDecoder


@dataclass
class ImageOutput:
    features: torch.Tensor  # (B, embed_dim) projected CLS, f^v
    tokens: torch.Tensor  # (B, 1+N, width) after ln_post, before projection, z^v


@dataclass
class TextOutput:
    features: torch.Tensor  # (B, embed_dim) projected end-of-text token, f^t
    tokens: torch.Tensor  # (B, L, width) all output tokens, z^t
    padding: torch.Tensor  # (B, L) True after the end-of-text token


@dataclass
class StepOutput:
    image: ImageOutput
    text: TextOutput
    recon: torch.Tensor | None
    image_parts: PartEmbeddings | None = None
    text_parts: PartEmbeddings | None = None
    id_logits: dict[str, torch.Tensor] = field(default_factory=dict)


class VFETPS(nn.Module):
    def __init__(
        self,
        clip: nn.Module,
        use_mim: bool = True,
        mim_layers: int = 4,
        mim_heads: int = 8,
        tau: float = 0.02,
        learnable_tau: bool = False,
        mim_width: int | None = None,
        mim_dropout: float = 0.1,
        mim_clip_init: bool = False,
        parts: PartsHead | None = None,
        id_heads: nn.Module | None = None,
    ) -> None:
        super().__init__()
        visual = clip.visual
        # The token path below mirrors open_clip's plain ViT pooling; other variants are refused.
        if getattr(visual, "attn_pool", None) is not None or visual.final_ln_after_pool:
            raise ValueError(
                "only plain ViT towers (CLS pooling, ln_post before pooling) are built"
            )
        self.clip = clip
        # Our temperature is ``tau`` below; open_clip's own logit scale is kept but never trained.
        clip.logit_scale.requires_grad_(False)
        self.grid = tuple(int(g) for g in visual.grid_size)
        self.patch_size = int(visual.patch_size[0])
        width = visual.transformer.width
        text_width = clip.transformer.width
        self.mim = (
            TextGuidedDecoder(
                width,
                text_width,
                self.grid,
                self.patch_size,
                mim_heads,
                mim_layers,
                width=mim_width,
                dropout=mim_dropout,
                clip_init=mim_clip_init,
            )
            if use_mim
            else None
        )
        self.parts = parts
        # Identity classifiers of the part slots (and optionally of g): training only.
        self.id_heads = id_heads
        log_scale = torch.tensor(1.0 / tau).log()
        self.log_inv_tau = nn.Parameter(log_scale, requires_grad=learnable_tau)

    @property
    def tau(self) -> torch.Tensor:
        return self.log_inv_tau.exp().reciprocal()

    def encode_image(self, images: torch.Tensor) -> ImageOutput:
        visual = self.clip.visual
        x = visual._embeds(images)
        x = visual.transformer(x)
        x = visual.ln_post(x)
        pooled = x[:, 0] @ visual.proj if visual.proj is not None else x[:, 0]
        return ImageOutput(features=pooled, tokens=x)

    def encode_text(self, text: torch.Tensor) -> TextOutput:
        open_clip = import_open_clip()
        clip = self.clip
        cast_dtype = clip.transformer.get_cast_dtype()
        x = clip.token_embedding(text).to(cast_dtype)
        x = x + clip.positional_embedding.to(cast_dtype)
        x = clip.transformer(x, attn_mask=clip.attn_mask)
        x = clip.ln_final(x)
        pooled = open_clip.transformer.text_global_pool(x, text, clip.text_pool_type)
        pooled = pooled @ clip.text_projection
        # The end-of-text token has the largest id; everything after it is padding.
        eot = text.argmax(dim=-1, keepdim=True)
        positions = torch.arange(text.shape[1], device=text.device).unsqueeze(0)
        return TextOutput(features=pooled, tokens=x, padding=positions > eot)

    def reconstruct(self, masked_images: torch.Tensor, text: TextOutput) -> torch.Tensor:
        """Second pass of the image encoder over the masked image, decoded with the caption."""
        if self.mim is None:
            raise RuntimeError("TG-MIM is off for this model")
        tokens = self.encode_image(masked_images).tokens
        return self.mim(tokens, text.tokens, text.padding)

    def forward(
        self, images: torch.Tensor, text: torch.Tensor, masked_images: torch.Tensor | None = None
    ) -> StepOutput:
        """One training forward (DDP syncs gradients only for work done inside ``forward``)."""
        image_out = self.encode_image(images)
        text_out = self.encode_text(text)
        recon = self.reconstruct(masked_images, text_out) if masked_images is not None else None
        out = StepOutput(image_out, text_out, recon)
        if self.parts is not None:
            # The clean pass's patch tokens (CLS dropped), never the masked TG-MIM pass.
            out.image_parts = self.parts.image(image_out.tokens[:, 1:])
            out.text_parts = self.parts.text(text_out.tokens, text_out.padding)
        if self.id_heads is not None and out.image_parts is not None:
            out.id_logits = self.id_heads(
                out.image_parts, out.text_parts, image_out.features, text_out.features
            )
        return out

    def new_module_parameters(self) -> list[nn.Parameter]:
        """Everything not from CLIP: the TG-MIM decoder, the parts head, the classifiers."""
        modules = [m for m in (self.mim, self.parts, self.id_heads) if m is not None]
        return [p for m in modules for p in m.parameters()]
