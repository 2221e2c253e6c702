"""The reference configs load, agree with each other, and train a step the way they say."""

from __future__ import annotations

from pathlib import Path

import torch

from bundle.preprocess import load_preprocess
from training.checkpoint import save_checkpoint
from training.config import load_config
from training.export import export_bundle
from training.model.tgmim_reference import ReferenceDecoder
from training.train import Trainer

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
DATA_FIELDS = {"dataset", "val_split", "val_from_train", "root"}
REFERENCE = sorted(CONFIGS.glob("vfe-tps-*-reference.yaml"))


def test_the_three_reference_configs_share_one_recipe() -> None:
    assert len(REFERENCE) == 3
    recipes = [load_config(p, {"root": Path(".")}).model_dump() for p in REFERENCE]
    first = {k: v for k, v in recipes[0].items() if k not in DATA_FIELDS}
    for other in recipes[1:]:
        assert {k: v for k, v in other.items() if k not in DATA_FIELDS} == first


def test_a_reference_config_trains_a_step_as_it_says(synthetic_root: Path, tmp_path: Path) -> None:
    small = {
        "root": synthetic_root,
        "model": "tiny",
        "pretrained": "none",
        "batch_size": 8,
        "instances_per_id": 2,
        "gvfc_images": 4,
        "mim_layers": 1,
        "workers": 0,
        "epochs": 1,
        "out": tmp_path / "run",
    }
    cfg = load_config(CONFIGS / "vfe-tps-cuhk-reference.yaml", small)
    trainer = Trainer(cfg)
    core = trainer.core
    assert isinstance(core.mim, ReferenceDecoder) and core.mask_token is not None
    assert core.classifier is not None
    transform = repr(trainer.dataset._reader.transform)
    assert "bilinear" in transform.lower() and "RandomErasing" in transform
    assert "bilinear" in repr(trainer.eval_transform).lower()
    before = {n: p.detach().clone() for n, p in core.named_parameters() if p.requires_grad}
    terms = trainer._train_step(next(iter(trainer.loader)))
    assert {"cmpm", "isgvfc", "tgmim", "gi2id", "loss"} <= set(terms)
    assert all(torch.isfinite(torch.tensor(v)) for v in terms.values())
    # Every trained parameter moved, the mask token and the classifier among them.
    moved = {n for n, p in core.named_parameters() if p.requires_grad and not p.equal(before[n])}
    assert {"mask_token", "classifier.weight", "mim.head.weight", "clip.visual.proj"} <= moved
    # The bundle preprocesses as the run trained: bilinear resizing.
    checkpoint = tmp_path / "last.pt"
    save_checkpoint(trainer._state(), checkpoint)
    bundle = export_bundle(checkpoint, tmp_path / "bundle")
    assert "bilinear" in repr(load_preprocess(bundle)).lower()


def test_reference_step_under_bf16_autocast_keeps_losses_fp32() -> None:
    from bundle.openclip_import import import_open_clip
    from training.objectives import compute_losses
    from training.train import build_model

    cfg = load_config(
        CONFIGS / "vfe-tps-cuhk-reference.yaml",
        {"root": Path("."), "model": "tiny", "pretrained": "none", "mim_layers": 1},
    )
    torch.manual_seed(0)
    core, model_cfg, _ = build_model(cfg, num_ids=4)
    tokenizer = import_open_clip().tokenizer.SimpleTokenizer(
        context_length=model_cfg["text_cfg"]["context_length"]
    )
    images = torch.randn(8, 3, 192, 64)
    tokens = tokenizer(["a man in a red coat"] * 8)
    pids = torch.arange(4).repeat_interleave(2)
    stats = (torch.zeros(1, 3, 1, 1), torch.ones(1, 3, 1, 1))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        losses = compute_losses(core, core, images, tokens, pids, cfg, stats)
    assert {"tgmim", "gi2id"} <= set(losses.terms)
    assert all(v.dtype == torch.float32 and torch.isfinite(v) for v in losses.terms.values())
    losses.objective.backward()
    assert core.mask_token.grad is not None and core.mask_token.grad.abs().sum() > 0
