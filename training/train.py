"""The training loop: P×K batches, VFE-TPS losses, validation each epoch, a bundle at the end."""

from __future__ import annotations

import json
import logging
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from tqdm import tqdm

from index.openclip_import import import_open_clip
from training.checkpoint import load_checkpoint, save_checkpoint
from training.config import TrainConfig
from training.data.dataset import CaptionPairs, collate_pairs
from training.data.formats import load_records, val_from_train
from training.data.records import Record
from training.data.sampler import IdentityBatchSampler
from training.data.text_augment import keep_attribute_words
from training.data.transforms import build_eval_transform, build_train_transform
from training.evaluate import EvalSplit, evaluate_split
from training.export import export_bundle
from training.model.towers import TowerSpec, build_towers
from training.model.vfe_tps import VFETPS
from training.objectives import compute_losses
from training.plot import plot_run
from training.runtime import Runtime, setup_runtime, shutdown
from training.schedule import warmup_cosine

log = logging.getLogger(__name__)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def build_model(cfg: TrainConfig) -> tuple[VFETPS, dict, TowerSpec]:
    spec = TowerSpec(cfg.model, cfg.pretrained, cfg.image_size, cfg.quick_gelu)
    clip, model_cfg = build_towers(spec)
    core = VFETPS(
        clip,
        use_mim=cfg.uses("tgmim"),
        mim_layers=cfg.mim_layers,
        mim_heads=cfg.mim_heads,
        tau=cfg.tau,
        learnable_tau=cfg.learnable_tau,
    )
    return core, model_cfg, spec


def split_records(cfg: TrainConfig) -> tuple[list[Record], list[Record] | None, str]:
    """Train and validation records, and how the checkpoint will be selected."""
    train = load_records(cfg.dataset, cfg.root, "train")
    if cfg.val_from_train:
        train, val = val_from_train(train, cfg.val_from_train, cfg.seed)
        return train, val, f"val R1 (identities held out of train, {cfg.val_from_train:.0%})"
    if cfg.val_split == "none":
        return train, None, "last epoch (no validation split)"
    return train, load_records(cfg.dataset, cfg.root, cfg.val_split), f"{cfg.val_split} R1"


class RunLog:
    """Append-only JSONL of every loss term and learning rate: one object per line, plottable."""

    def __init__(self, path: Path, enabled: bool) -> None:
        self.path = path
        self.enabled = enabled

    def write(self, **entry: Any) -> None:
        if self.enabled:
            with open(self.path, "a") as fh:
                fh.write(json.dumps(entry) + "\n")


def _optimizer(core: VFETPS, cfg: TrainConfig) -> torch.optim.Optimizer:
    new_ids = {id(p) for p in core.new_module_parameters()}
    base = [p for p in core.parameters() if p.requires_grad and id(p) not in new_ids]
    groups = [{"params": base, "lr": cfg.lr, "name": "clip"}]
    if new_ids:
        groups.append(
            {
                "params": core.new_module_parameters(),
                "lr": cfg.lr * cfg.new_module_lr_mult,
                "name": "new",
            }
        )
    return torch.optim.Adam(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)


class Trainer:
    def __init__(self, cfg: TrainConfig) -> None:
        self.cfg = cfg
        self.rt: Runtime = setup_runtime(cfg.device, cfg.precision)
        seed_everything(cfg.seed + self.rt.rank)
        self.out = Path(cfg.out)
        self.ckpt_dir = self.out / "checkpoints"
        if self.rt.is_main:
            self.ckpt_dir.mkdir(parents=True, exist_ok=True)
            (self.out / "config.yaml").write_text(
                yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)
            )
        self.log = RunLog(self.out / "log.jsonl", self.rt.is_main)

        train_records, val_records, self.selected_on = split_records(cfg)
        self.core, self.model_cfg, self.spec = build_model(cfg)
        self.core.to(self.rt.device)
        open_clip = import_open_clip()
        self.mean = tuple(open_clip.OPENAI_DATASET_MEAN)
        self.std = tuple(open_clip.OPENAI_DATASET_STD)
        size = self.spec.resolved_image_size()
        self.tokenizer = open_clip.tokenizer.SimpleTokenizer(
            context_length=self.model_cfg["text_cfg"].get("context_length", 77)
        )
        self.dataset = CaptionPairs(
            train_records,
            build_train_transform(size, self.mean, self.std, random_erasing=cfg.random_erasing),
        )
        k = cfg.instances_per_id
        self.sampler = IdentityBatchSampler(
            self.dataset.labels,
            cfg.batch_size // k,
            k,
            image_ids=self.dataset.image_ids,
            seed=cfg.seed,
            num_replicas=self.rt.world_size,
            rank=self.rt.rank,
        )
        if len(self.sampler) == 0:
            raise ValueError(
                f"no full P×K batch of {cfg.batch_size} fits {len(self.dataset)} training pairs"
            )
        self.loader = DataLoader(
            self.dataset,
            batch_sampler=self.sampler,
            num_workers=cfg.workers,
            collate_fn=collate_pairs,
            persistent_workers=cfg.workers > 0,
        )
        self.eval_transform = build_eval_transform(size, self.mean, self.std)
        self.val_split = EvalSplit.from_records(val_records) if val_records else None

        self.optimizer = _optimizer(self.core, cfg)
        self.steps_per_epoch = len(self.sampler)
        self.total_steps = cfg.epochs * self.steps_per_epoch
        warmup = round(cfg.warmup_epochs * self.steps_per_epoch)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda s: warmup_cosine(s, self.total_steps, warmup, cfg.min_lr_ratio)
        )
        self.scaler = torch.amp.GradScaler(self.rt.device.type, enabled=self.rt.use_grad_scaler)
        self.epoch, self.step, self.best = 0, 0, None
        self.skipped_ids: set[str] = set()
        self.norm_stats = (
            torch.tensor(self.mean, device=self.rt.device).view(1, 3, 1, 1),
            torch.tensor(self.std, device=self.rt.device).view(1, 3, 1, 1),
        )
        self.text_rng = random.Random(cfg.seed + 1000 * self.rt.rank)
        if cfg.resume and (self.ckpt_dir / "last.pt").is_file():
            self._resume(self.ckpt_dir / "last.pt")
        elif self.rt.is_main:
            # A fresh start: the curves must not continue an earlier run's log.
            (self.out / "log.jsonl").unlink(missing_ok=True)
        self.model: torch.nn.Module = self.core
        if self.rt.world_size > 1:
            self.model = DistributedDataParallel(
                self.core,
                device_ids=[self.rt.device.index] if self.rt.device.type == "cuda" else None,
            )

    # --- state -------------------------------------------------------------------------------

    def _state(self) -> dict[str, Any]:
        return {
            "model": self.core.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "epoch": self.epoch,
            "step": self.step,
            "best": self.best,
            "config": self.cfg.model_dump(mode="json"),
            "model_cfg": self.model_cfg,
            "spec": self.spec.__dict__,
            "rng": {
                "torch": torch.get_rng_state(),
                "python": random.getstate(),
                "numpy": np.random.get_state(),
                "text": self.text_rng.getstate(),
            },
        }

    def _resume(self, path: Path) -> None:
        state = load_checkpoint(path)
        self.core.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        self.epoch, self.step, self.best = state["epoch"], state["step"], state["best"]
        torch.set_rng_state(state["rng"]["torch"])
        random.setstate(state["rng"]["python"])
        np.random.set_state(state["rng"]["numpy"])
        self.text_rng.setstate(state["rng"]["text"])
        log.info("resumed from %s at epoch %d, step %d", path, self.epoch, self.step)

    # --- loop --------------------------------------------------------------------------------

    def _captions(self, captions: list[str]) -> list[str]:
        p = self.cfg.text_attr_aug
        if p <= 0:
            return captions
        return [keep_attribute_words(c) if self.text_rng.random() < p else c for c in captions]

    def _train_step(self, batch: dict[str, Any]) -> dict[str, float] | None:
        if batch["image"].shape[0] < 2:
            return None
        images = batch["image"].to(self.rt.device, non_blocking=True)
        tokens = self.tokenizer(self._captions(batch["caption"])).to(self.rt.device)
        pids = batch["label"].to(self.rt.device)
        with self.rt.autocast():
            terms = compute_losses(
                self.model, self.core, images, tokens, pids, self.cfg, self.norm_stats
            )
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(terms["loss"]).backward()
        if self.cfg.grad_clip:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.core.parameters(), self.cfg.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        return {k: float(v.detach()) for k, v in terms.items()}

    @torch.no_grad()
    def validate(self) -> dict[str, float] | None:
        if self.val_split is None:
            return None
        self.core.eval()
        tokenizer, device = self.tokenizer, self.rt.device

        def images(x: torch.Tensor) -> torch.Tensor:
            with self.rt.autocast():
                return self.core.encode_image(x.to(device)).features.float()

        def texts(captions: list[str]) -> torch.Tensor:
            with self.rt.autocast():
                return self.core.encode_text(tokenizer(captions).to(device)).features.float()

        metrics = evaluate_split(self.val_split, images, texts, self.eval_transform, progress=False)
        self.core.train()
        return metrics

    def _end_of_epoch(self, finished_epoch: bool) -> None:
        metrics = self.validate() if self.rt.is_main else None
        if self.rt.is_main:
            if metrics is not None:
                self.log.write(kind="val", epoch=self.epoch, step=self.step, **metrics)
                log.info(
                    "epoch %d val R1 %.2f R5 %.2f mAP %.2f",
                    self.epoch,
                    metrics["R1"],
                    metrics["R5"],
                    metrics["mAP"],
                )
            key = (metrics["R1"], metrics["mAP"]) if metrics else (self.epoch, 0.0)
            if self.best is None or tuple(self.best["key"]) <= key:
                self.best = {"key": list(key), "epoch": self.epoch, "metrics": metrics}
                save_checkpoint(
                    {**self._state(), "val_metrics": metrics}, self.ckpt_dir / "best.pt"
                )
        if finished_epoch:
            self.epoch += 1  # on every rank: each one runs the epoch loop
        if self.rt.is_main:
            save_checkpoint(self._state(), self.ckpt_dir / "last.pt")
        if self.rt.world_size > 1:
            torch.distributed.barrier()

    def _past(self, deadline: float) -> bool:
        """Whether the time budget is spent; under DDP rank 0's clock decides for every rank."""
        late = torch.tensor([time.monotonic() > deadline], dtype=torch.uint8)
        if self.rt.world_size > 1:
            late = late.to(self.rt.device)
            torch.distributed.broadcast(late, src=0)
        return bool(late.item())

    def fit(self) -> Path | None:
        cfg = self.cfg
        deadline = time.monotonic() + cfg.max_minutes * 60 if cfg.max_minutes else None
        self.core.train()
        start_time, out_of_time = time.monotonic(), False
        while self.epoch < cfg.epochs and not out_of_time:
            self.sampler.set_epoch(self.epoch)
            bar = tqdm(
                self.loader,
                desc=f"epoch {self.epoch + 1}/{cfg.epochs}",
                disable=not self.rt.is_main,
                dynamic_ncols=True,
            )
            for batch in bar:
                terms = self._train_step(batch)
                self.step += 1
                # Workers hold their own dataset copies, so undecodable files are counted here.
                self.skipped_ids.update(batch["skipped_image_ids"])
                if terms is None:
                    continue
                bar.set_postfix(loss=f"{terms['loss']:.3f}")
                if self.step % cfg.log_every == 0:
                    lrs = {f"lr_{g['name']}": g["lr"] for g in self.optimizer.param_groups}
                    elapsed = time.monotonic() - start_time
                    self.log.write(
                        kind="train",
                        epoch=self.epoch,
                        step=self.step,
                        elapsed_s=elapsed,
                        skipped=batch["skipped"],
                        **terms,
                        **lrs,
                    )
                if deadline and self._past(deadline):
                    out_of_time = True
                    log.info(
                        "time budget of %.1f min reached at step %d", cfg.max_minutes, self.step
                    )
                    break
            self._end_of_epoch(finished_epoch=not out_of_time)
        if self.skipped_ids:
            log.warning(
                "%d training images could not be decoded and were skipped: %s",
                len(self.skipped_ids),
                ", ".join(sorted(self.skipped_ids)[:10]),
            )
        bundle = None
        if self.rt.is_main:
            bundle = export_bundle(self.ckpt_dir / "best.pt", self.out / "bundle", self.selected_on)
            plot_run(self.out / "log.jsonl", self.out / "curves.png")
        shutdown(self.rt)
        return bundle


def train(cfg: TrainConfig) -> Path | None:
    """Train, validate each epoch, and export the selected checkpoint to ``cfg.out/bundle``."""
    return Trainer(cfg).fit()
