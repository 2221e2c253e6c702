"""Training configuration: one pydantic model, filled from a YAML file and then CLI overrides."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

LOSSES = ("cmpm", "sdm", "tgmim", "isgvfc", "triplet")


class TrainConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # data
    dataset: str = "cuhk-pedes"
    root: Path
    val_split: str = "val"
    val_from_train: float | None = Field(
        None, gt=0, lt=1, description="hold out this fraction of train identities as val (ICFG)"
    )
    workers: int = Field(2, ge=0)
    # model
    model: Literal["tiny", "ViT-B-16"] = "ViT-B-16"
    pretrained: str = "none"
    image_size: tuple[int, int] | None = None
    quick_gelu: bool | None = None
    # objectives
    losses: list[str] = ["cmpm", "tgmim", "isgvfc"]
    tau: float = Field(0.02, gt=0)
    learnable_tau: bool = False
    mask_ratio: float = Field(0.6, gt=0, lt=1)
    mim_layers: int = Field(4, ge=1)
    mim_heads: int = Field(8, ge=1)
    mim_grayscale: bool = False
    lambda_mim: float = 1.0
    lambda_gvfc: float = 1.0
    lambda_triplet: float = 1.0
    gvfc_images: int = Field(20, ge=2)
    triplet_margin: float = 0.2
    text_attr_aug: float = Field(0.0, ge=0, le=1, description="P(keep only attribute words)")
    random_erasing: float = Field(0.0, ge=0, le=1)
    # optimisation
    epochs: int = Field(60, ge=1)
    batch_size: int = Field(100, ge=2)
    instances_per_id: int = Field(4, ge=1)
    lr: float = Field(1e-5, gt=0)
    new_module_lr_mult: float = Field(5.0, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    warmup_epochs: float = Field(1.0, ge=0)
    min_lr_ratio: float = Field(0.0, ge=0, le=1)
    grad_clip: float | None = Field(5.0, gt=0)
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    max_minutes: float | None = Field(None, gt=0, description="stop training after this wall time")
    # run
    seed: int = 0
    device: str = "auto"
    out: Path = Path("runs/default")
    resume: bool = True
    log_every: int = Field(10, ge=1)

    @field_validator("losses", mode="before")
    @classmethod
    def _split_losses(cls, value: object) -> object:
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
        if self.batch_size % self.instances_per_id:
            raise ValueError(
                f"batch_size {self.batch_size} must be a multiple of instances_per_id "
                f"{self.instances_per_id} (P persons × K images)"
            )
        return self

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
