"""VFE-TPS: the two open_clip towers (kept for inference) and the TG-MIM decoder (training only)."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from bundle.openclip_import import import_open_clip
from bundle.parts_head import PartEmbeddings, PartsHead
from training.model.tgmim import TextGuidedDecoder
from training.model.tgmim_reference import ReferenceDecoder


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
    gi2id_logits: torch.Tensor | None = None  # (B, persons) of the image features f^v


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
        mim_decoder: str = "paper",
        mask_token: bool = False,
        gi2id_classes: int | None = None,
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
        self.mim: TextGuidedDecoder | ReferenceDecoder | None = None
        if use_mim and mim_decoder == "reference":
            if mim_width is not None or mim_dropout:
                raise ValueError("the reference decoder has no width or dropout setting")
            embed_dim = int(visual.output_dim)
            self.mim = ReferenceDecoder(
                embed_dim, self.grid, self.patch_size, mim_heads, mim_layers
            )
        elif use_mim and mim_decoder == "paper":
            self.mim = TextGuidedDecoder(
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
        elif use_mim:
            raise ValueError(f"unknown TG-MIM decoder {mim_decoder!r}: paper or reference")
        # SimMIM's learnable token in place of a masked patch's embedding (the reference code:
        # zeros at the start, trained at the base rate).
        self.mask_token = nn.Parameter(torch.zeros(1, 1, width)) if mask_token else None
        # The reference code's ``classifier``: its gi2id loss classifies f^v into persons.
        self.classifier = None
        if gi2id_classes:
            self.classifier = nn.Linear(int(visual.output_dim), gi2id_classes)
            nn.init.normal_(self.classifier.weight, std=0.001)
            nn.init.zeros_(self.classifier.bias)
        self.parts = parts
        # Identity classifiers of the part slots (and optionally of g): training only.
        self.id_heads = id_heads
        log_scale = torch.tensor(1.0 / tau).log()
        self.log_inv_tau = nn.Parameter(log_scale, requires_grad=learnable_tau)

    @property
    def tau(self) -> torch.Tensor:
        return self.log_inv_tau.exp().reciprocal()

    def encode_image(
        self, images: torch.Tensor, patch_mask: torch.Tensor | None = None
    ) -> ImageOutput:
        """``patch_mask`` (B, N) bool: those patches' embeddings become the mask token."""
        visual = self.clip.visual
        x = (
            visual._embeds(images)
            if patch_mask is None
            else self._masked_embeds(images, patch_mask)
        )
        x = visual.transformer(x)
        x = visual.ln_post(x)
        pooled = x[:, 0] @ visual.proj if visual.proj is not None else x[:, 0]
        return ImageOutput(features=pooled, tokens=x)

    def _masked_embeds(self, images: torch.Tensor, patch_mask: torch.Tensor) -> torch.Tensor:
        """open_clip's ``_embeds`` with the mask token replacing the masked patch embeddings
        before the class token and positions are added (SimMIM; the reference code's order)."""
        if self.mask_token is None:
            raise RuntimeError("this model has no mask token (mim_mask zero)")
        visual = self.clip.visual
        x = visual.conv1(images)
        x = x.reshape(x.shape[0], x.shape[1], -1).permute(0, 2, 1)
        x = torch.where(patch_mask.unsqueeze(-1), self.mask_token.to(x.dtype), x)
        cls = visual.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
        x = torch.cat([cls, x], dim=1) + visual.positional_embedding.to(x.dtype)
        return visual.ln_pre(visual.patch_dropout(x))

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

    def reconstruct(
        self,
        masked_images: torch.Tensor,
        text: TextOutput,
        patch_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Second pass of the image encoder over the masked image (zeroed pixels, or the mask
        token over ``patch_mask``), decoded with the caption."""
        if self.mim is None:
            raise RuntimeError("TG-MIM is off for this model")
        tokens = self.encode_image(masked_images, patch_mask).tokens
        text_tokens = text.tokens
        if isinstance(self.mim, ReferenceDecoder):
            # The reference decodes ln_post(tokens) @ visual.proj: the pretrained projection.
            tokens = _project(tokens, self.clip.visual.proj)
            text_tokens = _project(text_tokens, self.clip.text_projection)
        return self.mim(tokens, text_tokens, text.padding)

    def forward(
        self,
        images: torch.Tensor,
        text: torch.Tensor,
        masked_images: torch.Tensor | None = None,
        patch_mask: torch.Tensor | None = None,
    ) -> StepOutput:
        """One training forward (DDP syncs gradients only for work done inside ``forward``)."""
        image_out = self.encode_image(images)
        text_out = self.encode_text(text)
        recon = (
            self.reconstruct(masked_images, text_out, patch_mask)
            if masked_images is not None
            else None
        )
        out = StepOutput(image_out, text_out, recon)
        if self.classifier is not None:
            # In fp32, as every loss input (the reference casts it to fp16 and back).
            with torch.autocast(device_type=images.device.type, enabled=False):
                out.gi2id_logits = self.classifier(image_out.features.float())
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
        """Everything not from CLIP: the TG-MIM decoder, the mask token, the parts head, the
        classifiers."""
        heads = (self.mim, self.parts, self.id_heads, self.classifier)
        modules = [m for m in heads if m is not None]
        token = [self.mask_token] if self.mask_token is not None else []
        return [p for m in modules for p in m.parameters()] + token

    def classifier_parameters(self) -> list[nn.Parameter]:
        """Identity classifiers: the reference code sets their 5× after the bias rule, so even
        their biases keep it."""
        modules = [m for m in (self.id_heads, self.classifier) if m is not None]
        return [p for m in modules for p in m.parameters()]

    def boosted_parameters(self, scope: str) -> list[nn.Parameter]:
        """What ``new_module_lr_mult`` reaches: every new module (``decoder``), or as the
        reference code (``reference``): the decoder's cross-attention and blocks and the
        classifiers, never its norms, head or mask token. The part head is not in the
        reference code and stays boosted under both."""
        if scope == "decoder":
            return self.new_module_parameters()
        if scope != "reference":
            raise ValueError(f"unknown learning-rate scope {scope!r}: decoder or reference")
        if self.mim is not None and not isinstance(self.mim, ReferenceDecoder):
            raise ValueError("the reference learning-rate scope needs the reference decoder")
        decoder = self.mim.boosted_parameters() if self.mim is not None else []
        parts = list(self.parts.parameters()) if self.parts is not None else []
        return decoder + parts + self.classifier_parameters()


def _project(tokens: torch.Tensor, projection: nn.Module | torch.Tensor | None) -> torch.Tensor:
    """Apply a tower's output projection (a matrix, or a Linear in some open_clip models)."""
    if projection is None:
        return tokens
    if isinstance(projection, nn.Module):
        return projection(tokens)
    return tokens @ projection
