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
from index.search.engine_policy import EnginePolicy
from index.stores import milvus_target, store_kind
from service.access.clients import parse_networks

MB = 1024 * 1024
DEFAULT_AUDIT_RETENTION_DAYS = 365.0
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
    milvus_search_consistency: Literal["strong", "session", "bounded"] = Field(
        default="strong",
        description="What searches on a Milvus server wait for: strong (every write acknowledged "
        "anywhere, waiting up to one server time tick, 200 ms by default), session (this "
        "replica's own writes at once, other replicas' within about a tick, no wait) or "
        "bounded (may lag a few seconds). Writes and duplicate checks always read strong.",
    )
    orphan_grace_s: float | None = Field(
        default=None,
        ge=0,
        description="The orphan sweep removes only orphan files older than this; default 0 "
        f"for a folder or milvus-lite store, {SHARED_SWEEP_GRACE_S:g} for a Milvus server.",
    )
    orphan_sweep_interval_s: float = Field(
        default=600.0,
        ge=0,
        description="How often to remove orphan files (left by uploads killed or cut off from "
        "the store between their file and their commit) while serving, besides at start-up; "
        "0: only at start-up.",
    )
    device: Literal["auto", "cpu", "cuda"] = "auto"
    runtime: Literal["torch", "onnx", "onnx-int8"] = Field(
        default="torch",
        description="What runs the towers: torch, onnx (the bundle's ONNX graphs in ONNX Runtime, "
        "CPU or CUDA/TensorRT per TPS_DEVICE) or onnx-int8 (INT8 text tower, CPU). onnx needs "
        "`python -m bundle export-onnx BUNDLE` first.",
    )
    precision: Literal["auto", "fp32", "bf16"] = Field(
        default="auto",
        description="The torch runtime's compute precision: auto (bf16 on a GPU, fp32 on the "
        "CPU), fp32 or bf16; onnx runtimes are fp32. Must match the precision the gallery was "
        "encoded in (recorded in the store): the service refuses to start otherwise.",
    )
    parts: bool = Field(
        default=False,
        description="Serve the bundle in parts mode (a parts bundle, torch runtime): the gallery "
        "must be a parts index (`python -m index build --parts`), searches may send part "
        "weights. The store records its layout; a mismatch refuses to start.",
    )
    trim_text: bool = Field(
        default=True,
        description="Run the text tower only up to each batch's longest query (exact); false only "
        "to measure the full-context baseline.",
    )
    index_gpu: Literal["auto", "always", "never"] = Field(
        default="auto", description="Search on a GPU copy of the index (auto: when one exists)."
    )
    index_gpu_shards: bool = Field(
        default=False,
        description="Shard the GPU copy of the index over every visible GPU; off: one copy on "
        "the encoder's GPU (TPS_DEVICE), or GPU 0.",
    )
    index_refresh_s: float = Field(
        default=10.0,
        ge=0,
        description="How often to pick up index changes made by other "
        "processes (e.g. `python -m index add`); 0 turns it off.",
    )

    # Access (service/access/security.py, docs/security.md). Every route but the probes
    # and the page needs a key; TPS_API_KEY is one admin key, TPS_KEYS_FILE holds named keys.
    api_key: SecretStr | None = None
    keys_file: Path | None = Field(
        default=None,
        description="JSON file of named keys with roles (`python -m service keys create`).",
    )
    open_reads: bool = Field(
        default=False,
        description="Let anyone search and view images without a key; honoured only on a "
        "loopback address (the local demo).",
    )
    trusted_proxies: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated addresses or networks of reverse proxies whose "
        "X-Forwarded-For names the client; empty (the default): forwarding headers are never "
        "believed and the address that connected is the client.",
    )
    auth_lockout_failures: int = Field(
        default=10,
        ge=0,
        description="Wrong keys from one client (off this machine) within "
        "TPS_AUTH_LOCKOUT_WINDOW_S that lock it out for TPS_AUTH_LOCKOUT_S (429 with "
        "Retry-After); 0 turns the lock-out off.",
    )
    auth_lockout_window_s: float = Field(
        default=60.0,
        gt=0,
        description="The window in which TPS_AUTH_LOCKOUT_FAILURES wrong keys lock a client out.",
    )
    auth_lockout_s: float = Field(
        default=300.0, gt=0, description="How long a locked-out client is answered 429."
    )
    file_mode: Literal["owner", "group"] = Field(
        default="owner",
        description="Who may read the files the service creates (uploads, index generations, "
        "manifest, audit trail): owner (0600 files, 0700 folders) or group (0640, 0750).",
    )
    # Deprecated: true is what every server now does; false means TPS_OPEN_READS=true, with its
    # loopback-only rule (service/access/security.py). Reads as ``not open_reads`` once validated.
    read_requires_key: bool | None = None

    # Audit trail (service/access/audit.py) and retention (service/access/retention.py).
    audit: bool = Field(default=True, description="Record searches, views, uploads, deletes.")
    audit_db: Path | None = Field(
        default=None,
        description="SQLite file of the audit trail; default IMAGES-audit.sqlite next to the "
        "image folder IMAGES. Replicas on one host may share it; SQLite's WAL mode needs a "
        "local disk, so replicas on several hosts each need their own.",
    )
    audit_sync: Literal["full", "normal"] = Field(
        default="full",
        description="SQLite synchronous mode of the trail: full fsyncs every commit (an entry "
        "survives a power cut); normal survives the process being killed, not the machine.",
    )
    audit_timeout_s: float = Field(
        default=5.0,
        gt=0,
        description="How long a request waits for its audit entry before failing with 503.",
    )
    audit_retention_days: float | None = Field(
        default=DEFAULT_AUDIT_RETENTION_DAYS,
        ge=0,
        description=f"Delete audit entries older than this many days (default "
        f"{DEFAULT_AUDIT_RETENTION_DAYS:g}: the trail outlives footage retention, but not "
        "forever); 0 keeps them forever.",
    )
    audit_refusal_interval_s: float = Field(
        default=60.0,
        ge=0,
        description="Refused requests (auth_failed, forbidden) are audited at most once per "
        "client, route and kind in this many seconds; the next entry counts those left out "
        "(suppressed), so a flood cannot fill the disk. 0 audits every one.",
    )
    retention_days: float | None = Field(
        default=None,
        gt=0,
        description="Remove gallery images captured (or, without a capture time, added) longer "
        "ago than this; unset keeps them.",
    )
    retention_interval_s: float = Field(default=3600.0, gt=0)

    # Exact search on the CPU (index/search/engine_policy.py): auto picks per batch size by what the
    # CPU has, then by a timed trial cached per machine and gallery size class.
    exact_engine: Literal["auto", "faiss-flat", "numpy-fp32", "torch-bf16-rescore"] = Field(
        default="auto",
        description="The exact CPU search engine of a FAISS flat index: auto (detected, then "
        "calibrated) or one engine for every batch size.",
    )
    exact_calibrate: bool = Field(
        default=True,
        description="Time the candidate engines once per machine and gallery size class "
        "(seconds at 1M vectors); false: the detected rule alone.",
    )
    engine_cache_dir: Path | None = Field(
        default=None,
        description="Where calibrations are cached; default $XDG_CACHE_HOME/person-search.",
    )

    # Request limits.
    max_query_chars: int = Field(default=1000, ge=1)
    max_top_k: int = Field(default=100, ge=1, le=2048)
    max_batch_queries: int = Field(default=64, ge=1)
    max_json_bytes: int = Field(default=1 * MB, ge=1024)
    max_upload_bytes: int = Field(default=20 * MB, ge=1024)
    max_files: int = Field(default=16, ge=1)
    max_pixels: int = Field(default=40_000_000, ge=1)
    max_query_pixels: int = Field(
        default=4_000_000,
        ge=1,
        description="Pixels a search photo (/v1/search/image) may decode to, far fewer than an "
        "upload's: the towers see 384x128. A JPEG counts at the reduced scale it is decoded at "
        "(1/2 to 1/8), so a phone's photo passes (its file within TPS_MAX_PIXELS).",
    )
    max_concurrent_decodes: int = Field(
        default=2,
        ge=1,
        description="Search photos decoded at once; more wait their turn, so a flood of large "
        "photos costs bounded memory.",
    )
    max_image_side: int = Field(default=12_000, ge=16)
    thumb_size: int = Field(default=256, ge=16, le=1024)

    # Recordings (POST /v1/footage; docs/footage.md).
    footage_max_bytes: int = Field(
        default=2048 * MB, ge=1024, description="Largest recording a request may send."
    )
    footage_formats: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["mp4", "mov", "matroska", "webm", "avi"],
        description="Comma-separated container formats accepted (FFmpeg's short names).",
    )
    footage_max_pixels: int = Field(
        default=7680 * 4320, ge=1, description="Pixels a recording's frame may have (8K)."
    )
    footage_detector: str = Field(
        default="hog",
        description="The person detector of footage jobs: hog, or onnx:FILE (a YOLO-family "
        "ONNX export on this host).",
    )
    footage_sample_fps: float = Field(default=5.0, gt=0, le=120)
    footage_crops_per_track: int = Field(default=3, ge=1, le=20)
    footage_max_jobs: int = Field(
        default=4,
        ge=1,
        description="Footage jobs queued or running at once (one runs at a time); more get 429.",
    )

    # Cross-request batching of text encodes. Chosen from measurements with ViT-B-16 on 2 CPU
    # cores (docs/performance.md): batches of at most 8, grouped by caption length, served 22-28%
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

    @field_validator("audit_retention_days", mode="before")
    @classmethod
    def _blank_is_default(cls, value: object) -> object:
        # Unset (compose's empty string) keeps the default; 0 is how to keep entries forever.
        if isinstance(value, str) and not value.strip():
            return DEFAULT_AUDIT_RETENTION_DAYS
        return value

    @field_validator("audit_retention_days", mode="after")
    @classmethod
    def _zero_is_forever(cls, value: float | None) -> float | None:
        return value or None

    @field_validator("retention_days", "keys_file", "audit_db", mode="before")
    @classmethod
    def _blank_is_none(cls, value: object) -> object:
        # Compose passes an unset variable as an empty string: that means "not set".
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

    @field_validator("cors_origins", "trusted_proxies", "footage_formats", mode="before")
    @classmethod
    def _split_list(cls, value: object) -> object:
        if isinstance(value, str):
            return [o.strip() for o in value.split(",") if o.strip()]
        return value

    @field_validator("trusted_proxies", mode="after")
    @classmethod
    def _check_proxies(cls, value: list[str]) -> list[str]:
        parse_networks(value)  # a typo must not silently trust nobody (or everybody)
        return value

    @model_validator(mode="after")
    def _derive(self) -> Settings:
        self._resolve_store()
        if self.image_dir is None:
            self.image_dir = self._default_image_dir()
        if self.read_requires_key is False:  # the deprecated spelling of open reads
            self.open_reads = True
        self.read_requires_key = not self.open_reads
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

    def engine_policy(self) -> EnginePolicy:
        """The exact-search policy: batch sizes the service searches with (one query, one
        micro-batch of encodes, the largest batch request)."""
        return EnginePolicy(
            forced=None if self.exact_engine == "auto" else self.exact_engine,
            calibrate=self.exact_calibrate,
            batches=tuple(sorted({1, self.batch_max_size, self.max_batch_queries})),
            cache_dir=self.engine_cache_dir,
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
        return self.api_key is not None or self.keys_file is not None

    @property
    def audit_path(self) -> Path:
        images = self.images_path  # beside it, not in it: that folder holds only images
        return self.audit_db or images.with_name(f"{images.name}-audit.sqlite")
