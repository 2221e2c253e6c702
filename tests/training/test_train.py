"""End to end: train from the CLI, resume, export, and check the bundle against the model."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

from bundle.encoders import Bundle
from bundle.openclip_import import import_open_clip
from training.checkpoint import load_checkpoint
from training.model.towers import TowerSpec, build_towers
from training.model.vfe_tps import VFETPS

TRAIN_ARGS = [
    "--dataset",
    "cuhk-pedes",
    "--model",
    "tiny",
    "--batch-size",
    "16",
    "--instances-per-id",
    "2",
    "--lr",
    "3e-4",
    "--mim-layers",
    "1",
    "--gvfc-images",
    "8",
    "--workers",
    "0",
    "--log-every",
    "1",
    "--losses",
    "cmpm,tgmim,isgvfc",
]


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "training", *args],
        capture_output=True,
        text=True,
        timeout=600,
        env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"},
    )


@pytest.fixture(scope="module")
def run_dir(synthetic_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("train") / "run"
    proc = run_cli(
        "train", *TRAIN_ARGS, "--root", str(synthetic_root), "--epochs", "1", "--out", str(out)
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1])["bundle"] == str(out / "bundle")
    return out


def test_run_writes_log_curves_checkpoints_and_bundle(run_dir: Path) -> None:
    entries = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]
    train = [e for e in entries if e["kind"] == "train"]
    assert train and {"cmpm", "tgmim", "isgvfc", "loss", "lr_clip", "lr_new"} <= set(train[0])
    assert train[0]["lr_new"] == pytest.approx(5 * train[0]["lr_clip"])
    assert any(e["kind"] == "val" and "R1" in e for e in entries)
    assert (run_dir / "curves.png").stat().st_size > 0
    assert {p.name for p in (run_dir / "checkpoints").iterdir()} >= {"best.pt", "last.pt"}
    meta = json.loads((run_dir / "bundle" / "bundle.json").read_text())
    assert meta["selected_on"] == "val R1" and meta["losses"] == ["cmpm", "tgmim", "isgvfc"]
    assert "R1" in meta["val_metrics"]


def test_resume_continues_from_the_last_checkpoint(run_dir: Path, synthetic_root: Path) -> None:
    before = load_checkpoint(run_dir / "checkpoints" / "last.pt")
    # More epochs stretch the cosine schedule: a recipe change, accepted here on purpose.
    proc = run_cli(
        "train", *TRAIN_ARGS, "--root", str(synthetic_root), "--epochs", "2", "--out", str(run_dir),
        "--accept-changes", "epochs",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    after = load_checkpoint(run_dir / "checkpoints" / "last.pt")
    assert before["epoch"] == 1 and after["epoch"] == 2
    assert after["step"] == 2 * before["step"]
    entries = [json.loads(x) for x in (run_dir / "log.jsonl").read_text().splitlines()]
    train_steps = [e["step"] for e in entries if e["kind"] == "train"]
    assert len(train_steps) == len(set(train_steps)), "resumed run repeated steps"


def test_bundle_loads_with_open_clip_alone(run_dir: Path) -> None:
    open_clip = import_open_clip()
    model, _, _ = open_clip.create_model_and_transforms(f"local-dir:{run_dir / 'bundle'}")
    tokenizer = open_clip.get_tokenizer(f"local-dir:{run_dir / 'bundle'}")
    assert model.encode_text(tokenizer(["a man"])).shape[-1] == 128


def test_bundle_embeds_like_the_training_model(run_dir: Path, synthetic_root: Path) -> None:
    state = load_checkpoint(run_dir / "checkpoints" / "best.pt")
    clip, _ = build_towers(TowerSpec("tiny"))
    core = VFETPS(clip, use_mim=True, mim_layers=1)
    core.load_state_dict(state["model"])
    core.eval()
    bundle = Bundle(run_dir / "bundle")
    image_path = next((synthetic_root / "imgs").rglob("*.jpg"))
    with Image.open(image_path) as img:
        pixels = bundle.preprocess(img.convert("RGB")).unsqueeze(0)
    captions = ["a woman in a red coat carrying a white bag", "black trousers"]
    tokens = import_open_clip().tokenizer.SimpleTokenizer(
        context_length=bundle.meta.context_length
    )(captions)
    with torch.no_grad():
        ref_image = torch.nn.functional.normalize(core.encode_image(pixels).features, dim=-1)
        ref_text = torch.nn.functional.normalize(core.encode_text(tokens).features, dim=-1)
    assert torch.allclose(torch.from_numpy(bundle.encode_images(pixels)), ref_image, atol=1e-5)
    assert torch.allclose(torch.from_numpy(bundle.encode_text(captions)), ref_text, atol=1e-5)


def test_evaluate_prints_the_metrics_json(run_dir: Path, synthetic_root: Path) -> None:
    proc = run_cli(
        "evaluate",
        "--bundle",
        str(run_dir / "bundle"),
        "--dataset",
        "cuhk-pedes",
        "--root",
        str(synthetic_root),
        "--split",
        "test",
        "--quiet",
        "--workers",
        "0",
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    metrics = json.loads(proc.stdout)
    assert {"R1", "R5", "R10", "mAP", "mINP"} <= set(metrics)
    assert 0 <= metrics["R1"] <= metrics["R5"] <= metrics["R10"] <= 100


def test_export_any_checkpoint(run_dir: Path, tmp_path: Path) -> None:
    proc = run_cli(
        "export",
        "--checkpoint",
        str(run_dir / "checkpoints" / "last.pt"),
        "--out",
        str(tmp_path / "b"),
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert Bundle(tmp_path / "b").dim == 128


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["train", "--root", "/nonexistent", "--model", "tiny"], "does not exist"),
        (["train", "--root", ".", "--losses", "cmpm,nope"], "unknown losses"),
        (
            ["evaluate", "--bundle", "/nonexistent", "--dataset", "cuhk-pedes", "--root", "."],
            "not a bundle",
        ),
    ],
)
def test_bad_input_exits_non_zero_with_one_line(args: list[str], message: str) -> None:
    proc = run_cli(*args)
    assert proc.returncode == 2
    assert message in proc.stderr
    assert proc.stderr.strip().count("\n") == 0


def _recorded(run_dir: Path, name: str) -> object:
    return load_checkpoint(run_dir / "checkpoints" / "last.pt")["config"][name]


def test_resume_with_another_recipe_is_refused_and_changes_nothing(
    run_dir: Path, synthetic_root: Path
) -> None:
    epochs = str(_recorded(run_dir, "epochs"))
    before = {p.name: p.read_bytes() for p in [run_dir / "config.yaml", run_dir / "log.jsonl"]}
    last = (run_dir / "checkpoints" / "last.pt").read_bytes()
    args = ["train", *TRAIN_ARGS, "--root", str(synthetic_root), "--out", str(run_dir)]
    proc = run_cli(*args, "--epochs", epochs, "--lr", "1e-3", "--adam-eps", "1e-3")
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0
    assert "lr: 0.0003 -> 0.001" in proc.stderr and "adam_eps: 1e-08 -> 0.001" in proc.stderr
    assert "--accept-changes lr,adam_eps" in proc.stderr and "--resume false" in proc.stderr
    assert {p.name: p.read_bytes() for p in [run_dir / "config.yaml", run_dir / "log.jsonl"]} == (
        before
    )
    assert (run_dir / "checkpoints" / "last.pt").read_bytes() == last

    accepted = run_cli(*args, "--epochs", epochs, "--lr", "1e-3", "--accept-changes", "lr")
    assert accepted.returncode == 0, accepted.stderr[-2000:]
    entries = [json.loads(x) for x in (run_dir / "log.jsonl").read_text().splitlines()]
    assert {"kind": "recipe_change", "changes": {"lr": [3e-4, 1e-3]}} in entries
    assert _recorded(run_dir, "lr") == 1e-3


def test_selection_on_test_needs_the_flag_and_is_recorded(
    synthetic_root: Path, tmp_path: Path
) -> None:
    args = ["train", *TRAIN_ARGS, "--root", str(synthetic_root), "--out", str(tmp_path / "r")]
    args += ["--epochs", "1", "--val-split", "test"]
    refused = run_cli(*args)
    assert refused.returncode == 2 and "--select-on-test true" in refused.stderr
    assert not (tmp_path / "r").exists()
    # The reference code's CMPM baseline: plain random batches, no identity sampler.
    proc = run_cli(*args, "--select-on-test", "true", "--losses", "cmpm", "--sampler", "random")
    assert proc.returncode == 0, proc.stderr[-2000:]
    meta = json.loads((tmp_path / "r" / "bundle" / "bundle.json").read_text())
    assert meta["selected_on_test"] is True and meta["selected_on"].startswith("test R1")
    data = [json.loads(x) for x in (tmp_path / "r" / "log.jsonl").read_text().splitlines()]
    assert [e["sampler"] for e in data if e["kind"] == "data"] == ["random"]


def test_persons_left_out_by_the_sampler_are_counted(run_dir: Path) -> None:
    entries = [json.loads(x) for x in (run_dir / "log.jsonl").read_text().splitlines()]
    data = [e for e in entries if e["kind"] == "data"]
    assert data and data[0]["sampler"] == "pk"
    assert {"persons", "pairs", "excluded_persons", "excluded_pairs"} <= set(data[0])


def test_checkpoints_load_without_unpickling_objects(tmp_path: Path) -> None:
    class Payload:
        def __reduce__(self) -> tuple:
            return (Path.touch, (tmp_path / "ran",))

    torch.save({"model": {}, "payload": Payload()}, tmp_path / "evil.pt")
    with pytest.raises(ValueError, match="not unpickled"):
        load_checkpoint(tmp_path / "evil.pt")
    assert not (tmp_path / "ran").exists()


def test_a_parts_run_exports_a_global_only_bundle(synthetic_root: Path, tmp_path: Path) -> None:
    from safetensors import safe_open

    out = tmp_path / "parts"
    args = ["train", *TRAIN_ARGS, "--root", str(synthetic_root), "--out", str(out)]
    proc = run_cli(*args, "--epochs", "1", "--losses", "cmpm,parts", "--parts-stripes", "4")
    assert proc.returncode == 0, proc.stderr[-2000:]
    entries = [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines()]
    train = [e for e in entries if e["kind"] == "train"]
    assert train and {"parts_rank", "parts_id"} <= set(train[0])
    state = load_checkpoint(out / "checkpoints" / "last.pt")
    assert any(k.startswith("parts.") for k in state["model"])
    with safe_open(str(out / "bundle" / "open_clip_model.safetensors"), "pt") as weights:
        names = list(weights.keys())
    assert names and not [k for k in names if "parts" in k or "id_heads" in k]
    assert Bundle(out / "bundle").dim == 128


def _train_log(out: Path) -> list[tuple[int, int, float, float]]:
    """(epoch, step, learning rate, loss) of every logged training step."""
    entries = [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines()]
    return [
        (e["epoch"], e["step"], e["lr_clip"], e["loss"]) for e in entries if e["kind"] == "train"
    ]


def test_a_run_stopped_mid_epoch_resumes_at_the_next_batch(
    synthetic_root: Path, tmp_path: Path
) -> None:
    """Stopped by its time budget after one step and resumed, a run takes exactly
    epochs × steps_per_epoch steps, with the uninterrupted run's learning rates and losses."""
    from training.config import TrainConfig
    from training.train import train

    def config(out: Path, **extra: object) -> TrainConfig:
        return TrainConfig(
            root=synthetic_root, model="tiny", epochs=2, batch_size=16, instances_per_id=2,
            lr=3e-4, warmup_epochs=1, val_split="none", workers=0, log_every=1,
            losses=["cmpm"], out=out, **extra,
        )  # fmt: skip

    train(config(tmp_path / "whole"))
    whole = _train_log(tmp_path / "whole")
    steps_per_epoch = sum(1 for epoch, *_ in whole if epoch == 0)
    assert steps_per_epoch >= 3 and len(whole) == 2 * steps_per_epoch

    train(config(tmp_path / "split", max_minutes=1e-9))  # the budget ends after the first step
    stopped = _train_log(tmp_path / "split")
    assert [step for _, step, *_ in stopped] == [1]
    train(config(tmp_path / "split"))
    resumed = _train_log(tmp_path / "split")
    assert [(e, s) for e, s, *_ in resumed] == [(e, s) for e, s, *_ in whole]
    assert [lr for *_, lr, _ in resumed] == pytest.approx([lr for *_, lr, _ in whole], rel=1e-12)
    assert [loss for *_, loss in resumed] == pytest.approx([loss for *_, loss in whole], rel=1e-4)


def test_the_activation_is_resolved_logged_recorded_and_kept_on_resume(
    synthetic_root: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """OpenAI's archive under auto trains with QuickGELU: the run log, the bundle and the export's
    own log say so, and a resume that would change it is refused before anything is written.
    (No step is trained: the run's checkpoints are the ones an epoch's end writes.)"""
    from tests.training.model.test_weights import write_torchscript
    from training.config import TrainConfig
    from training.export import export_bundle
    from training.train import RecipeChangedError, Trainer

    torch.manual_seed(0)
    state = {k: v.half() for k, v in build_towers(TowerSpec("tiny"))[0].state_dict().items()}
    archive = write_torchscript(state, tmp_path / "ViT-B-16.pt")
    out = tmp_path / "run"

    def config(**extra: object) -> TrainConfig:
        return TrainConfig(
            root=synthetic_root, model="tiny", pretrained=str(archive), epochs=1, batch_size=16,
            instances_per_id=2, val_split="none", workers=0, losses=["cmpm"], out=out, **extra,
        )  # fmt: skip

    caplog.clear()  # the stand-in's own towers above may be logged, as another test set levels
    with caplog.at_level(logging.INFO, logger="training.model.towers"):
        Trainer(config())._end_of_epoch(finished_epoch=False)
        export_bundle(out / "checkpoints" / "best.pt", out / "bundle")
    towers = [r.getMessage() for r in caplog.records if r.name == "training.model.towers"]
    assert len(towers) == 2  # the run's towers, then the export's
    assert all("QuickGELU (OpenAI's TorchScript archive)" in line for line in towers), towers
    entries = [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines()]
    record = {"quick_gelu": True, "source": "OpenAI's TorchScript archive"}
    assert {"kind": "model", "pretrained": str(archive), **record} in entries
    meta = json.loads((out / "bundle" / "bundle.json").read_text())
    assert meta["activation"] == record
    config_file = json.loads((out / "bundle" / "open_clip_config.json").read_text())
    assert config_file["model_cfg"]["quick_gelu"] is True

    # A checkpoint of a run from before the spec held the resolved activation exports the truth.
    old = load_checkpoint(out / "checkpoints" / "last.pt")
    old["spec"] = {k: v for k, v in old["spec"].items() if k != "quick_gelu_source"}
    old["spec"]["quick_gelu"] = None
    torch.save(old, tmp_path / "old.pt")
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="training.model.towers"):
        export_bundle(tmp_path / "old.pt", tmp_path / "old-bundle")
    assert "QuickGELU (the training run's model config)" in caplog.text
    assert json.loads((tmp_path / "old-bundle" / "bundle.json").read_text())["activation"] == {
        "quick_gelu": True,
        "source": "the training run's model config",
    }

    files = [out / "config.yaml", out / "log.jsonl", out / "checkpoints" / "last.pt"]
    before = [p.read_bytes() for p in files]
    with pytest.raises(RecipeChangedError, match=r"quick_gelu: True -> False.*quick_gelu"):
        Trainer(config(quick_gelu=False))
    assert [p.read_bytes() for p in files] == before
