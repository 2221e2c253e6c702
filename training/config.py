"""Training configuration: one pydantic model, filled from a YAML file and then CLI overrides."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

LOSSES = ("cmpm", "sdm", "tgmim", "isgvfc", "triplet", "parts", "gi2id")
# Changing these between runs does not change what is trained, so a resume may differ in them.
RUN_ONLY_FIELDS = frozenset(
    {
        "out",
        "resume",
        "accept_changes",
        "workers",
        "log_every",
        "max_minutes",
        "device",
        "parts_export",
    }
)
# Compared by the value they resolve to once the towers are built (train.py), not as written:
# auto and true are one recipe for OpenAI's weights.
RESOLVED_FIELDS = frozenset({"quick_gelu"})


class TrainConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # data
    dataset: str = "cuhk-pedes"
    root: Path
    val_split: str = "val"
    select_on_test: bool = Field(
        False, description="allow --val-split test (selection on test: optimistic test numbers)"
    )
    val_from_train: float | None = Field(
        None, gt=0, lt=1, description="hold out this fraction of train identities as val (ICFG)"
    )
    workers: int = Field(2, ge=0)
    # model
    model: Literal["tiny", "ViT-B-16"] = "ViT-B-16"
    pretrained: str = "none"
    image_size: tuple[int, int] | None = None
    quick_gelu: Literal["auto"] | bool = Field(
        "auto", description="QuickGELU: auto (as the weights record it), true or false"
    )
    # objectives
    losses: list[str] = ["cmpm", "tgmim", "isgvfc"]
    tau: float = Field(0.02, gt=0)
    learnable_tau: bool = False
    mask_ratio: float = Field(0.6, gt=0, lt=1)
    mim_layers: int = Field(4, ge=1)
    mim_heads: int = Field(8, ge=1)
    mim_grayscale: bool = False
    mim_width: int | None = Field(
        None, ge=8, description="decoder width; default the image tower's (paper 768, ref. 512)"
    )
    mim_dropout: float = Field(0.1, ge=0, lt=1, description="decoder dropout (reference: 0)")
    mim_init: Literal["default", "clip"] = Field(
        "default", description="decoder init: torch defaults, or CLIP-style std (reference)"
    )
    mask_block: int = Field(
        1, ge=1, description="mask square blocks of N×N patches (paper 1, reference 2)"
    )
    mim_mask: Literal["zero", "token"] = Field(
        "zero",
        description="masked patches: zeroed pixels (paper), or a learnable mask token in place "
        "of their patch embeddings, SimMIM-style (reference)",
    )
    mim_decoder: Literal["paper", "reference"] = Field(
        "paper",
        description="paper: residual post-norm cross-attention + GELU encoder layers; reference: "
        "tokens through CLIP's visual.proj, pre-LN cross-attention without residual, CLIP "
        "resblocks (QuickGELU), ln_post, xavier head",
    )
    lambda_mim: float = 1.0
    lambda_gvfc: float = 1.0
    lambda_triplet: float = 1.0
    lambda_gi2id: float = Field(1.0, ge=0, description="weight of the image-identity loss gi2id")
    gvfc_images: int = Field(20, ge=2)
    triplet_margin: float = 0.2
    # part-level head (docs/parts.md; training-only unless exported with parts)
    parts_tokens: int = Field(4, ge=1, description="coarse tokens M shared by both modalities")
    parts_stripes: int = Field(6, ge=1, description="fine parts K: image stripes, text tokens")
    parts_width: int = Field(512, ge=8, description="head width d")
    parts_dim: int = Field(256, ge=8, description="part embedding size d_p")
    parts_pool: Literal["max", "avg"] = "max"
    parts_alpha: float = Field(0.2, ge=0, description="coarse ranking margin")
    parts_margin_low: float = Field(0.1, ge=0, description="CMR margin for alike parts")
    parts_margin_high: float = Field(0.3, ge=0, description="CMR margin for unlike parts")
    parts_global_id: bool = Field(False, description="also an identity loss on the global g")
    lambda_parts: float = 1.0
    parts_export: bool = Field(
        False, description="the bundle carries the part head for parts-mode inference (6x index)"
    )
    text_attr_aug: float = Field(0.0, ge=0, le=1, description="P(keep only attribute words)")
    random_erasing: float = Field(0.0, ge=0, le=1)
    random_erasing_fill: Literal["zero", "mean"] = Field(
        "zero",
        description="erased pixels: 0 after normalising (the mean colour), or the numbers of "
        "CLIP's mean written after normalising (reference)",
    )
    resize_interpolation: Literal["bicubic", "bilinear"] = Field(
        "bicubic",
        description="resizing of images (training, validation, the bundle) and of the "
        "pretrained position grid (reference: bilinear)",
    )
    # optimisation
    epochs: int = Field(60, ge=1)
    batch_size: int = Field(100, ge=2, description="the global batch: W processes take B/W each")
    sampler: Literal["pk", "random"] = Field(
        "pk", description="pk: P persons × K images (IS-GVFC needs it); random: plain batches"
    )
    instances_per_id: int = Field(4, ge=1)
    gather_features: bool = Field(
        True, description="under several processes, align against the whole global batch"
    )
    lr: float = Field(1e-5, gt=0)
    new_module_lr_mult: float = Field(5.0, gt=0)
    bias_lr_mult: float = Field(1.0, gt=0, description="learning-rate factor of biases (ref. 2)")
    bias_lr_mode: Literal["multiply", "override"] = Field(
        "multiply",
        description="multiply: a bias gets its module's rate × bias_lr_mult; override: "
        "lr × bias_lr_mult in place of the module's factor (reference)",
    )
    new_module_lr_scope: Literal["decoder", "reference"] = Field(
        "decoder",
        description="what new_module_lr_mult covers: the whole TG-MIM decoder, or only its "
        "cross-attention and blocks and the identity classifier (reference)",
    )
    adam_betas: tuple[float, float] = (0.9, 0.999)
    adam_eps: float = Field(1e-8, gt=0, description="Adam epsilon (reference: 1e-3)")
    weight_decay: float = Field(0.0, ge=0)
    no_decay: list[Literal["bias", "norm"]] = Field(
        [], description="parameters exempt from weight decay: bias, norm (reference: bias)"
    )
    warmup_epochs: float = Field(1.0, ge=0)
    warmup_start: float = Field(
        0.0, ge=0, lt=1, description="warm-up starts at this × lr (reference: 0.1)"
    )
    lr_step: Literal["step", "epoch"] = Field(
        "step", description="move the schedule every step or once per epoch (reference)"
    )
    min_lr_ratio: float = Field(0.0, ge=0, le=1)
    grad_clip: float | None = Field(None, gt=0, description="max gradient norm; off by default")
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    max_minutes: float | None = Field(None, gt=0, description="stop training after this wall time")
    # run
    seed: int = 0
    device: str = "auto"
    out: Path = Path("runs/default")
    resume: bool = True
    accept_changes: list[str] = Field(
        [], description="settings a resumed run may change on purpose (comma-separated)"
    )
    log_every: int = Field(10, ge=1)

    @field_validator("quick_gelu", mode="before")
    @classmethod
    def _auto_when_unset(cls, value: object) -> object:
        return "auto" if value is None else value  # configs before auto wrote None

    @field_validator("losses", "no_decay", "accept_changes", mode="before")
    @classmethod
    def _split_list(cls, value: object) -> object:
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        return value

    @model_validator(mode="after")
    def _check(self) -> TrainConfig:
        unknown = [loss for loss in self.losses if loss not in LOSSES]
        if unknown:
            raise ValueError(f"unknown losses {unknown}; choose from {', '.join(LOSSES)}")
        if not {"cmpm", "sdm"} & set(self.losses):
            raise ValueError("losses need an alignment loss: cmpm or sdm")
        if {"cmpm", "sdm"} <= set(self.losses):
            raise ValueError("choose one alignment loss: cmpm or sdm")
        if self.sampler == "pk" and self.batch_size % self.instances_per_id:
            raise ValueError(
                f"batch_size {self.batch_size} must be a multiple of instances_per_id "
                f"{self.instances_per_id} (P persons × K images)"
            )
        if self.uses("isgvfc") and self.sampler != "pk":
            raise ValueError("isgvfc needs batches with several images per person: use sampler pk")
        if self.val_split == "test" and not self.select_on_test:
            raise ValueError(
                "val_split test would select the checkpoint on the test split and make the "
                "test numbers optimistic; pass --select-on-test true to do it on purpose "
                "(the bundle records it)"
            )
        if self.parts_export and not self.uses("parts"):
            raise ValueError("parts_export needs the parts loss: add parts to losses")
        if self.parts_margin_low > self.parts_margin_high:
            raise ValueError("parts_margin_low must not exceed parts_margin_high")
        self._check_reference_options()
        unknown = sorted(set(self.accept_changes) - set(type(self).model_fields))
        if unknown:
            raise ValueError(f"accept_changes names unknown settings: {', '.join(unknown)}")
        return self

    def _check_reference_options(self) -> None:
        """Settings that would do nothing, or that the chosen code path cannot honour."""
        if not self.uses("tgmim"):
            inert = [
                f"{name} {getattr(self, name)}"
                for name, default in (("mim_mask", "zero"), ("mim_decoder", "paper"))
                if getattr(self, name) != default
            ]
            if inert:
                raise ValueError(f"{', '.join(inert)} need the tgmim loss: add tgmim to losses")
        if self.mim_decoder == "reference":
            if self.mim_width is not None:
                raise ValueError(
                    "mim_decoder reference works at the towers' embedding width (through CLIP's "
                    "visual.proj): leave mim_width unset"
                )
            if self.mim_dropout:
                raise ValueError("mim_decoder reference has no dropout: set mim_dropout 0")
            if self.mim_init != "clip":
                raise ValueError(
                    "mim_decoder reference is initialised CLIP-style: set mim_init clip"
                )
        scoped = self.new_module_lr_scope == "reference" and self.uses("tgmim")
        if scoped and self.mim_decoder != "reference":
            raise ValueError(
                "new_module_lr_scope reference names the reference decoder's modules: "
                "use it with mim_decoder reference"
            )
        if self.random_erasing_fill != "zero" and not self.random_erasing:
            raise ValueError("random_erasing_fill mean needs random_erasing > 0")

    def uses(self, loss: str) -> bool:
        return loss in self.losses


def load_config(path: Path | None, overrides: dict[str, object]) -> TrainConfig:
    """YAML first, then every CLI value that was given (None means 'not given')."""
    data: dict[str, object] = {}
    if path is not None:
        if not Path(path).is_file():
            raise FileNotFoundError(f"config file {path} does not exist")
        loaded = yaml.safe_load(Path(path).read_text()) or {}
        if not isinstance(loaded, dict):
            raise ValueError(f"{path} must hold a mapping of settings")
        data.update({k.replace("-", "_"): v for k, v in loaded.items()})
    data.update({k: v for k, v in overrides.items() if v is not None})
    return TrainConfig.model_validate(data)


def recipe_changes(recorded: dict[str, object], cfg: TrainConfig) -> dict[str, tuple]:
    """Settings whose value differs from a run's recorded config: name → (recorded, new).

    Run-only settings (where to write, how many workers, the time budget) may change freely. A
    setting the recorded config predates counts as changed only if it leaves its default.
    """
    new = cfg.model_dump(mode="json")
    defaults = TrainConfig(root=cfg.root).model_dump(mode="json")
    changes: dict[str, tuple] = {}
    for name, value in new.items():
        if name in RUN_ONLY_FIELDS or name in RESOLVED_FIELDS:
            continue
        before = recorded.get(name, defaults[name])
        if before != value:
            changes[name] = (before if name in recorded else "(not recorded)", value)
    return changes
