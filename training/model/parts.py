"""Training-only parts of the part-level head: its identity classifiers (the head itself is in
bundle/parts_head.py, since a parts bundle carries it to inference)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from bundle.parts_head import PartEmbeddings


class PartIdentityHeads(nn.Module):
    """One identity classifier per slot (M coarse + K fine), each shared by image and text, and
    optionally one on the global 512-d g. Training only: ~28 M parameters at CUHK-PEDES's 11,003
    training identities."""

    def __init__(
        self, coarse: int, fine: int, embed_dim: int, num_ids: int, global_dim: int | None = None
    ) -> None:
        super().__init__()
        self.coarse = nn.ModuleList(nn.Linear(embed_dim, num_ids) for _ in range(coarse))
        self.fine = nn.ModuleList(nn.Linear(embed_dim, num_ids) for _ in range(fine))
        self.global_head = nn.Linear(global_dim, num_ids) if global_dim else None

    @staticmethod
    def _slots(heads: nn.ModuleList, embeddings: Tensor) -> Tensor:
        return torch.stack([head(embeddings[:, s]) for s, head in enumerate(heads)], dim=1)

    def forward(
        self, image: PartEmbeddings, text: PartEmbeddings, g_image: Tensor, g_text: Tensor
    ) -> dict[str, Tensor]:
        """Logits (B, slots, num_ids) per group and modality."""
        logits = {
            "coarse_image": self._slots(self.coarse, image.coarse),
            "coarse_text": self._slots(self.coarse, text.coarse),
            "fine_image": self._slots(self.fine, image.fine),
            "fine_text": self._slots(self.fine, text.fine),
        }
        if self.global_head is not None:
            logits["global_image"] = self.global_head(g_image).unsqueeze(1)
            logits["global_text"] = self.global_head(g_text).unsqueeze(1)
        return logits
