"""Service configuration: one settings class, read from ``TPS_*`` environment variables."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

MB = 1024 * 1024


class Settings(BaseSettings):
    """Everything the service needs to start; ``TPS_BUNDLE`` and ``TPS_INDEX_DIR`` are required."""

    model_config = SettingsConfigDict(
        env_prefix="TPS_",
        env_nested_delimiter="__",
        env_file=None,
        extra="ignore",
        validate_default=True,
    )

    # What to serve.
    bundle: Path = Field(description="Inference bundle folder (from `python -m training export`).")
    index_dir: Path = Field(description="Gallery index folder (from `python -m index build`).")
    image_dir: Path | None = Field(
        default=None, description="Where uploaded images are stored; default <index_dir>/images."
    )
    device: Literal["auto", "cpu", "cuda"] = "auto"
    index_gpu: Literal["auto", "always", "never"] = Field(
        default="auto", description="Search on a GPU copy of the index (auto: when one exists)."
    )
    index_refresh_s: float = Field(
        default=10.0,
        ge=0,
        description="How often to pick up index changes made by other "
        "processes (e.g. `python -m index add`); 0 turns it off.",
    )

    # Access. Writes need the key; with no key configured, writes are refused outright.
    api_key: SecretStr | None = None
    read_requires_key: bool = False

    # Request limits.
    max_query_chars: int = Field(default=1000, ge=1)
    max_top_k: int = Field(default=100, ge=1, le=2048)
    max_batch_queries: int = Field(default=64, ge=1)
    max_json_bytes: int = Field(default=1 * MB, ge=1024)
    max_upload_bytes: int = Field(default=20 * MB, ge=1024)
    max_files: int = Field(default=16, ge=1)
    max_pixels: int = Field(default=40_000_000, ge=1)
    max_image_side: int = Field(default=12_000, ge=16)
    thumb_size: int = Field(default=256, ge=16, le=1024)

    # Cross-request batching of text encodes.
    batching: bool = True
    batch_max_size: int = Field(default=32, ge=1)
    batch_max_wait_ms: float = Field(default=5.0, ge=0)
    batch_queue_size: int = Field(default=256, ge=1)

    # HTTP.
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Comma-separated origins; empty turns CORS off."
    )
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    log_level: Literal["critical", "error", "warning", "info", "debug"] = "info"

    @field_validator("api_key", mode="before")
    @classmethod
    def _blank_key_is_none(cls, value: object) -> object:
        # An empty TPS_API_KEY= must not become a key that an empty header would match.
        if isinstance(value, str) and not value.strip():
            return None
        return value

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        if isinstance(value, str):
            return [o.strip() for o in value.split(",") if o.strip()]
        return value

    @model_validator(mode="after")
    def _derive(self) -> Settings:
        if self.image_dir is None:
            self.image_dir = self.index_dir / "images"
        if self.max_batch_queries > self.batch_queue_size:
            raise ValueError(
                f"max_batch_queries ({self.max_batch_queries}) must not exceed "
                f"batch_queue_size ({self.batch_queue_size}): such a request could never be queued"
            )
        return self

    @property
    def images_path(self) -> Path:
        assert self.image_dir is not None  # set by _derive
        return self.image_dir

    @property
    def writes_enabled(self) -> bool:
        return self.api_key is not None
