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

from bundle.openclip_import import import_open_clip
from bundle.parts_head import PartsHead
from training.checkpoint import load_checkpoint, save_checkpoint
from training.config import TrainConfig, recipe_changes
from training.data.batches import (
    EpochBatchSampler,
    RandomBatchSampler,
    RankSlice,
    ResumableBatches,
)
from training.data.dataset import CaptionPairs, collate_pairs
from training.data.formats import load_records, val_from_train
from training.data.records import Record
from training.data.sampler import IdentityBatchSampler
from training.data.text_augment import keep_attribute_words
from training.data.transforms import build_eval_transform, build_train_transform
from training.distributed import all_ranks_agree, mean_over_ranks
from training.evaluate import EvalSplit, evaluate_split
from training.export import export_bundle
from training.model.activation import Activation
from training.model.parts import PartIdentityHeads
from training.model.towers import TowerSpec, build_towers_with_report
from training.model.vfe_tps import VFETPS
from training.objectives import compute_losses
from training.optim import build_optimizer
from training.plot import plot_run
from training.runtime import Runtime, setup_runtime, shutdown
from training.schedule import warmup_cosine

log = logging.getLogger(__name__)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def build_model(cfg: TrainConfig, num_ids: int | None = None) -> tuple[VFETPS, dict, TowerSpec]:
    """The towers, TG-MIM decoder and (with ``parts``) the part head and its identity
    classifiers over ``num_ids`` training persons; the spec has its activation resolved."""
    quick_gelu = None if cfg.quick_gelu == "auto" else cfg.quick_gelu
    towers = build_towers_with_report(
        TowerSpec(
            cfg.model,
            cfg.pretrained,
            cfg.image_size,
            quick_gelu,
            pos_interpolation=cfg.resize_interpolation,
        )
    )
    clip, model_cfg, spec = towers.model, towers.model_cfg, towers.spec
    parts = id_heads = None
    if (cfg.uses("parts") or cfg.uses("gi2id")) and not num_ids:
        raise ValueError("identity classifiers need the number of training identities")
    if cfg.uses("parts"):
        grid = tuple(int(g) for g in clip.visual.grid_size)
        parts = PartsHead(
            clip.visual.transformer.width,
            clip.transformer.width,
            grid,
            width=cfg.parts_width,
            embed_dim=cfg.parts_dim,
            coarse_tokens=cfg.parts_tokens,
            stripes=cfg.parts_stripes,
            pool=cfg.parts_pool,
        )
        global_dim = int(model_cfg["embed_dim"]) if cfg.parts_global_id else None
        id_heads = PartIdentityHeads(
            cfg.parts_tokens, cfg.parts_stripes, cfg.parts_dim, num_ids, global_dim
        )
    core = VFETPS(
        clip,
        use_mim=cfg.uses("tgmim"),
        mim_layers=cfg.mim_layers,
        mim_heads=cfg.mim_heads,
        tau=cfg.tau,
        learnable_tau=cfg.learnable_tau,
        mim_width=cfg.mim_width,
        mim_dropout=cfg.mim_dropout,
        mim_clip_init=cfg.mim_init == "clip",
        parts=parts,
        id_heads=id_heads,
        mim_decoder=cfg.mim_decoder,
        mask_token=cfg.uses("tgmim") and cfg.mim_mask == "token",
        gi2id_classes=num_ids if cfg.uses("gi2id") else None,
    )
    return core, model_cfg, spec


def _numpy_state_to_plain(state: tuple) -> list:
    """numpy's RNG state as plain values, so checkpoints load with ``weights_only=True``."""
    name, keys, pos, has_gauss, cached = state
    return [name, [int(k) for k in keys], int(pos), int(has_gauss), float(cached)]


def _numpy_state_from_plain(state: list) -> tuple:
    name, keys, pos, has_gauss, cached = state
    return (name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached)


def split_records(cfg: TrainConfig) -> tuple[list[Record], list[Record] | None, str]:
    """Train and validation records, and how the checkpoint will be selected."""
    train = load_records(cfg.dataset, cfg.root, "train")
    if cfg.val_from_train:
        train, val = val_from_train(train, cfg.val_from_train, cfg.seed)
        return train, val, f"val R1 (identities held out of train, {cfg.val_from_train:.0%})"
    if cfg.val_split == "none":
        return train, None, "last epoch (no validation split)"
    selected_on = f"{cfg.val_split} R1"
    if cfg.val_split == "test":  # allowed only with select_on_test (config validation)
        selected_on += " (selected on the test split: test numbers are optimistic)"
    return train, load_records(cfg.dataset, cfg.root, cfg.val_split), selected_on


class RecipeChangedError(ValueError):
    """Resuming would continue a run under settings other than those it was started with."""


def check_resume(
    recorded: dict[str, Any], cfg: TrainConfig, resolved: dict[str, tuple] | None = None
) -> dict[str, tuple]:
    """The accepted changes of a resume; raise on any change not named in ``accept_changes``.

    ``resolved``: changes of settings compared by what they resolve to (config.RESOLVED_FIELDS)."""
    changes = {**recipe_changes(recorded, cfg), **(resolved or {})}
    refused = {k: v for k, v in changes.items() if k not in cfg.accept_changes}
    if refused:
        listed = "; ".join(f"{k}: {old!r} -> {new!r}" for k, (old, new) in refused.items())
        names = ",".join(refused)
        raise RecipeChangedError(
            f"{cfg.out} holds a run started with other settings ({listed}); use --resume false "
            f"to start over there, another --out, or --accept-changes {names} to continue "
            "with the new values on purpose"
        )
    return changes


class RunLog:
    """Append-only JSONL of every loss term and learning rate: one object per line, plottable."""

    def __init__(self, path: Path, enabled: bool) -> None:
        self.path = path
        self.enabled = enabled

    def write(self, **entry: Any) -> None:
        if self.enabled:
            with open(self.path, "a") as fh:
                fh.write(json.dumps(entry) + "\n")


class Trainer:
    def __init__(self, cfg: TrainConfig) -> None:
        self.cfg = cfg
        self.rt: Runtime = setup_runtime(cfg.device, cfg.precision)
        seed_everything(cfg.seed + self.rt.rank)
        self.out = Path(cfg.out)
        self.ckpt_dir = self.out / "checkpoints"
        last = self.ckpt_dir / "last.pt"
        resuming = cfg.resume and last.is_file()
        # Checked before anything is written: a refused resume leaves the run as it was.
        recorded = load_checkpoint(last) if resuming else None
        changes = check_resume(recorded["config"], cfg) if recorded else {}

        train_records, val_records, self.selected_on = split_records(cfg)
        num_ids = len({r.person_id for r in train_records})
        self.core, self.model_cfg, self.spec = build_model(cfg, num_ids)
        if recorded:
            changes = check_resume(recorded["config"], cfg, self._activation_change(recorded))
        if self.rt.is_main:
            self.ckpt_dir.mkdir(parents=True, exist_ok=True)
            (self.out / "config.yaml").write_text(
                yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)
            )
            if not resuming:
                # A fresh start: the curves must not continue an earlier run's log.
                (self.out / "log.jsonl").unlink(missing_ok=True)
        self.log = RunLog(self.out / "log.jsonl", self.rt.is_main)
        if changes:
            log.warning("resuming with changed settings (accepted): %s", changes)
            self.log.write(kind="recipe_change", changes={k: list(v) for k, v in changes.items()})
        self.log.write(kind="model", pretrained=cfg.pretrained, **self._activation().record())
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
            build_train_transform(
                size,
                self.mean,
                self.std,
                random_erasing=cfg.random_erasing,
                interpolation=cfg.resize_interpolation,
                erasing_fill=cfg.random_erasing_fill,
            ),
        )
        self.sampler = ResumableBatches(self._batch_sampler())
        self.loader = DataLoader(
            self.dataset,
            batch_sampler=self.sampler,
            num_workers=cfg.workers,
            collate_fn=collate_pairs,
            persistent_workers=cfg.workers > 0,
            # Its own generator for the per-epoch base seed: drawn from the global RNG, every
            # new epoch iterator (a resumed one too) would shift the augmentations after it.
            generator=torch.Generator().manual_seed(cfg.seed),
            # Pinned host memory is what makes the .to(device, non_blocking=True) copies async.
            pin_memory=self.rt.device.type == "cuda",
        )
        self.eval_transform = build_eval_transform(
            size, self.mean, self.std, interpolation=cfg.resize_interpolation
        )
        self.val_split = EvalSplit.from_records(val_records) if val_records else None

        self.optimizer = build_optimizer(self.core, cfg)
        self.steps_per_epoch = len(self.sampler)
        # The schedule moves every step, or once per epoch as in the reference code.
        per = 1 if cfg.lr_step == "epoch" else self.steps_per_epoch
        total, warmup = cfg.epochs * per, round(cfg.warmup_epochs * per)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer,
            lambda s: warmup_cosine(s, total, warmup, cfg.min_lr_ratio, cfg.warmup_start),
        )
        self.scaler = torch.amp.GradScaler(self.rt.device.type, enabled=self.rt.use_grad_scaler)
        self.epoch, self.step, self.best = 0, 0, None
        self.skipped_ids: set[str] = set()
        self.skipped_steps = 0
        self.norm_stats = (
            torch.tensor(self.mean, device=self.rt.device).view(1, 3, 1, 1),
            torch.tensor(self.std, device=self.rt.device).view(1, 3, 1, 1),
        )
        self.text_rng = random.Random(cfg.seed + 1000 * self.rt.rank)
        if resuming:
            self._resume(last)
            if changes and self.rt.is_main:
                save_checkpoint(self._state(), last)  # the accepted settings are now the run's
        self.model: torch.nn.Module = self.core
        if self.rt.world_size > 1:
            self.model = DistributedDataParallel(
                self.core,
                device_ids=[self.rt.device.index] if self.rt.device.type == "cuda" else None,
            )

    def _activation(self) -> Activation:
        return Activation(bool(self.spec.quick_gelu), self.spec.quick_gelu_source or "")

    def _activation_change(self, recorded: dict[str, Any]) -> dict[str, tuple]:
        """quick_gelu as the recorded run resolved it vs now; {} when they agree."""
        before = bool(recorded["model_cfg"].get("quick_gelu", False))
        if before == self.spec.quick_gelu:
            return {}
        return {"quick_gelu": (before, self.spec.quick_gelu)}

    def _batch_sampler(self) -> EpochBatchSampler:
        """The global batches of the recipe; each process keeps its share of every one."""
        cfg = self.cfg
        batches: EpochBatchSampler
        if cfg.sampler == "pk":
            k = cfg.instances_per_id
            batches = IdentityBatchSampler(
                self.dataset.labels,
                cfg.batch_size // k,
                k,
                image_ids=self.dataset.image_ids,
                seed=cfg.seed,
            )
        else:
            batches = RandomBatchSampler(len(self.dataset), cfg.batch_size, seed=cfg.seed)
        excluded = {
            "persons": len(set(self.dataset.labels)),
            "pairs": len(self.dataset),
            "excluded_persons": batches.excluded_persons,
            "excluded_pairs": getattr(batches, "excluded_samples", 0),
            "dropped_pairs_per_epoch": getattr(batches, "dropped_per_epoch", 0),
        }
        log.info(
            "%s sampler: %d pairs of %d persons, %d batches of %d per epoch; left out: %d "
            "persons with a single image (%d pairs), %d pairs of the last partial batch",
            cfg.sampler,
            excluded["pairs"],
            excluded["persons"],
            len(batches),
            cfg.batch_size,
            excluded["excluded_persons"],
            excluded["excluded_pairs"],
            excluded["dropped_pairs_per_epoch"],
        )
        self.log.write(kind="data", sampler=cfg.sampler, **excluded)
        if self.rt.world_size > 1:
            return RankSlice(batches, cfg.batch_size, self.rt.rank, self.rt.world_size)
        return batches

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
                "numpy": _numpy_state_to_plain(np.random.get_state()),
                "text": self.text_rng.getstate(),
            },
        }

    def _resume(self, path: Path) -> None:
        state = load_checkpoint(path)
        self.core.load_state_dict(state["model"])
        # The optimizer and schedule state carry the recorded rates; the config's win, so an
        # accepted change of lr, decay, eps or schedule really takes effect.
        configured = [
            {k: v for k, v in g.items() if k != "params"} for g in self.optimizer.param_groups
        ]
        try:
            self.optimizer.load_state_dict(state["optimizer"])
        except ValueError as err:
            raise RecipeChangedError(
                f"the optimizer of {path} has other parameter groups than these settings make "
                f"({err}); start over with --resume false"
            ) from err
        self.scheduler.load_state_dict(state["scheduler"])
        for group, fresh in zip(self.optimizer.param_groups, configured, strict=True):
            group.update(fresh)
        self.scheduler.base_lrs = [g["initial_lr"] for g in configured]
        for group, base, factor in zip(
            self.optimizer.param_groups,
            self.scheduler.base_lrs,
            self.scheduler.lr_lambdas,
            strict=True,
        ):
            group["lr"] = base * factor(self.scheduler.last_epoch)
        if state["scaler"]:  # empty when saved without loss scaling (fp32 or bf16)
            self.scaler.load_state_dict(state["scaler"])
        self.epoch, self.step, self.best = state["epoch"], state["step"], state["best"]
        torch.set_rng_state(state["rng"]["torch"])
        random.setstate(state["rng"]["python"])
        np.random.set_state(_numpy_state_from_plain(state["rng"]["numpy"]))
        self.text_rng.setstate(state["rng"]["text"])
        log.info("resumed from %s at epoch %d, step %d", path, self.epoch, self.step)

    # --- loop --------------------------------------------------------------------------------

    def _captions(self, captions: list[str]) -> list[str]:
        p = self.cfg.text_attr_aug
        if p <= 0:
            return captions
        return [keep_attribute_words(c) if self.text_rng.random() < p else c for c in captions]

    def _train_step(self, batch: dict[str, Any]) -> dict[str, float] | None:
        # Undecodable images can shrink a share; every process skips the step together, or
        # the others would wait forever in the gradient all-reduce.
        gathered = self.cfg.gather_features and self.rt.world_size > 1
        if not all_ranks_agree(batch["image"].shape[0] >= (1 if gathered else 2), self.rt.device):
            self.skipped_steps += 1
            return None
        images = batch["image"].to(self.rt.device, non_blocking=True)
        tokens = self.tokenizer(self._captions(batch["caption"])).to(self.rt.device)
        pids = batch["label"].to(self.rt.device)
        with self.rt.autocast():
            losses = compute_losses(
                self.model, self.core, images, tokens, pids, self.cfg, self.norm_stats
            )
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(losses.objective).backward()
        if self.cfg.grad_clip:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.core.parameters(), self.cfg.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        if self.cfg.lr_step == "step":
            self.scheduler.step()
        return {k: float(v.detach()) for k, v in losses.terms.items()}

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
            if self.cfg.lr_step == "epoch":
                self.scheduler.step()
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
            # A run stopped mid-epoch goes on with that epoch's next unseen batch.
            done = self.step - self.epoch * self.steps_per_epoch
            if 0 < done < self.steps_per_epoch:
                self.sampler.skip_next(done)
                log.info("resuming epoch %d at batch %d", self.epoch + 1, done + 1)
            bar = tqdm(
                self.loader,
                desc=f"epoch {self.epoch + 1}/{cfg.epochs}",
                initial=max(0, done) if done < self.steps_per_epoch else 0,
                total=self.steps_per_epoch,
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
                    terms = mean_over_ranks(terms, self.rt.device)
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
        if self.skipped_steps:
            log.warning(
                "%d steps were skipped: some process had too few decodable images",
                self.skipped_steps,
            )
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
