"""Building towers: random init, a local weights file, and clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from training.model.towers import TowerError, TowerSpec, build_towers


def test_tiny_random_init_has_the_pedestrian_input_size() -> None:
    clip, cfg = build_towers(TowerSpec("tiny"))
    assert cfg["vision_cfg"]["image_size"] == [192, 64]
    assert clip.encode_image(torch.randn(1, 3, 192, 64)).shape == (1, cfg["embed_dim"])


def test_local_weights_file_loads_and_resizes_the_position_grid(tmp_path: Path) -> None:
    # CLIP checkpoints come with a square position grid (14×14 for ViT-B/16): 4×4 here.
    torch.manual_seed(0)
    source, _ = build_towers(TowerSpec("tiny", image_size=(64, 64)))
    path = tmp_path / "tiny.pt"
    torch.save(source.state_dict(), path)
    spec = TowerSpec("tiny", pretrained=str(path), image_size=(384, 128), quick_gelu=False)
    loaded, cfg = build_towers(spec)
    assert cfg["quick_gelu"] is False  # a bare state dict records no activation: as told
    assert loaded.visual.positional_embedding.shape[0] == 1 + 24 * 8
    assert torch.equal(loaded.token_embedding.weight, source.token_embedding.weight)


def test_weights_of_another_shape_are_refused_clearly(tmp_path: Path) -> None:
    source, _ = build_towers(TowerSpec("tiny"))
    path = tmp_path / "tiny.pt"
    torch.save(source.state_dict(), path)
    with pytest.raises(TowerError, match="could not load"):
        build_towers(TowerSpec("ViT-B-16", pretrained=str(path)))


def test_missing_weights_file_and_unknown_model() -> None:
    with pytest.raises(TowerError, match="no such file"):
        build_towers(TowerSpec("tiny", pretrained="/nonexistent/weights.pt"))
    with pytest.raises(TowerError, match="unknown model"):
        build_towers(TowerSpec("ViT-Z-99"))
    with pytest.raises(TowerError, match="only for ViT-B-16"):
        build_towers(TowerSpec("tiny", pretrained="openai"))
