"""Service configuration: one settings class, read from ``TPS_*`` environment variables.

The gallery lives in one store: ``TPS_STORE`` names it (a folder, a Milvus server or a
milvus-lite file, see index/stores.py); unset, it is the ``TPS_INDEX_DIR`` folder, as before
there was a choice. Uploaded image files live in ``TPS_IMAGE_DIR``, which several replicas of a
Milvus-backed service share.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from index.errors import IndexStoreError
from index.stores import milvus_target, store_kind

MB = 1024 * 1024
# Orphan files younger than this survive the start-up sweep of a Milvus-backed service, whose
# image folder other replicas write to (see service/storage.py for why the lock comes first).
SHARED_SWEEP_GRACE_S = 900.0


class Settings(BaseSettings):
    """Everything the service needs to start: ``TPS_BUNDLE``, and ``TPS_STORE`` or
    ``TPS_INDEX_DIR``."""

    model_config = SettingsConfigDict(
        env_prefix="TPS_",
        env_nested_delimiter="__",
        env_file=None,
        extra="ignore",
        validate_default=True,
    )

    # What to serve.
    bundle: Path = Field(description="Inference bundle folder (from `python -m training export`).")
    store: str | None = Field(
        default=None,
        description="The gallery store: an index folder, milvus://HOST:PORT[/COLLECTION] (a "
        "Milvus server several replicas may share) or FILE.db (a milvus-lite file). "
        "Default: TPS_INDEX_DIR.",
    )
    index_dir: Path | None = Field(
        default=None,
        description="Gallery index folder (from `python -m index build`), when TPS_STORE is unset.",
    )
    image_dir: Path | None = Field(
        default=None,
        description="Where uploaded images are stored; default <index folder>/images, "
        "<FILE>-images next to a milvus-lite file; required with a Milvus server.",
    )
    create_store: bool = Field(
        default=False,
        description="Create an empty store for the served bundle when none exists yet.",
    )
    create_store_kind: str = Field(
        default="flat",
        description="The index kind of a store TPS_CREATE_STORE creates: flat, ivf or hnsw; on a "
        "Milvus GPU server also gpu_cagra or gpu_brute_force.",
    )
    orphan_grace_s: float | None = Field(
        default=None,
        ge=0,
        description="The start-up sweep removes only orphan files older than this; default 0 "
        f"for a folder or milvus-lite store, {SHARED_SWEEP_GRACE_S:g} for a Milvus server.",
    )
    device: Literal["auto", "cpu", "cuda"] = "auto"
    runtime: Literal["torch", "onnx", "onnx-int8"] = Field(
        default="torch",
        description="What runs the towers: torch, onnx (the bundle's ONNX graphs in ONNX Runtime, "
        "CPU or CUDA/TensorRT per TPS_DEVICE) or onnx-int8 (INT8 text tower, CPU). onnx needs "
        "`python -m bundle export-onnx BUNDLE` first.",
    )
    trim_text: bool = Field(
        default=True,
        description="Run the text tower only up to each batch's longest query (exact); false only "
        "to measure the full-context baseline.",
    )
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

    # Cross-request batching of text encodes. Chosen from measurements with ViT-B-16 on 2 CPU
    # cores (README "Performance"): batches of at most 8, grouped by caption length, served 22-28%
    # more queries per second at 32 clients than batches of 32, which pad every query to the
    # longest of 32; the window only applies once calls overlap.
    batching: bool = True
    batch_max_size: int = Field(default=8, ge=1)
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

    @field_validator("store", mode="before")
    @classmethod
    def _check_store(cls, value: object) -> object:
        if isinstance(value, str):
            if not value.strip():
                return None
            try:
                if store_kind(value) != "faiss":
                    milvus_target(value)
            except IndexStoreError as err:
                raise ValueError(str(err)) from None
        return value

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        if isinstance(value, str):
            return [o.strip() for o in value.split(",") if o.strip()]
        return value

    @model_validator(mode="after")
    def _derive(self) -> Settings:
        self._resolve_store()
        if self.image_dir is None:
            self.image_dir = self._default_image_dir()
        if self.max_batch_queries > self.batch_queue_size:
            raise ValueError(
                f"max_batch_queries ({self.max_batch_queries}) must not exceed "
                f"batch_queue_size ({self.batch_queue_size}): such a request could never be queued"
            )
        return self

    def _resolve_store(self) -> None:
        if self.store is None:
            if self.index_dir is None:
                raise ValueError(
                    "no gallery: set TPS_INDEX_DIR (an index folder) or TPS_STORE (a folder, "
                    "milvus://HOST:PORT[/COLLECTION] or FILE.db)"
                )
            return
        if store_kind(self.store) == "faiss":
            folder = Path(self.store)
            if self.index_dir is not None and self.index_dir != folder:
                raise ValueError(
                    f"TPS_STORE ({self.store}) and TPS_INDEX_DIR ({self.index_dir}) name "
                    "different folders: set one of them"
                )
            self.index_dir = folder
        elif self.index_dir is not None:
            raise ValueError(
                f"TPS_INDEX_DIR ({self.index_dir}) names an index folder, but TPS_STORE "
                f"({self.store}) is a Milvus store: unset TPS_INDEX_DIR"
            )

    def _default_image_dir(self) -> Path:
        if self.index_dir is not None:
            return self.index_dir / "images"
        assert self.store is not None  # _resolve_store
        if store_kind(self.store) == "milvus-lite":
            lite = Path(self.store)
            return lite.with_name(f"{lite.stem}-images")
        raise ValueError(
            f"TPS_IMAGE_DIR is required with a Milvus server (TPS_STORE={self.store}): the folder "
            "for uploaded images, the same for every replica"
        )

    @property
    def store_spec(self) -> str:
        """What index.stores.open_store opens: TPS_STORE, or the TPS_INDEX_DIR folder."""
        return self.store if self.store is not None else str(self.index_dir)

    @property
    def store_setting(self) -> str:
        """The setting that named the store, for messages: ``TPS_STORE=...`` or
        ``TPS_INDEX_DIR=...``."""
        if self.store is not None:
            return f"TPS_STORE={self.store}"
        return f"TPS_INDEX_DIR={self.index_dir}"

    @property
    def store_kind(self) -> str:
        """``faiss``, ``milvus`` (a server) or ``milvus-lite`` (a file)."""
        return store_kind(self.store_spec)

    @property
    def sweep_grace_s(self) -> float:
        if self.orphan_grace_s is not None:
            return self.orphan_grace_s
        return SHARED_SWEEP_GRACE_S if self.store_kind == "milvus" else 0.0

    @property
    def images_path(self) -> Path:
        assert self.image_dir is not None  # set by _derive
        return self.image_dir

    @property
    def writes_enabled(self) -> bool:
        return self.api_key is not None
