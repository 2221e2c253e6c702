"""Settings: environment parsing, derived defaults and refusals."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from service.settings import Settings


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    for name in ("TPS_API_KEY", "TPS_IMAGE_DIR", "TPS_CORS_ORIGINS", "TPS_BATCHING", "TPS_STORE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TPS_BUNDLE", str(tmp_path / "bundle"))
    monkeypatch.setenv("TPS_INDEX_DIR", str(tmp_path / "index"))
    return monkeypatch


def test_reads_tps_environment(env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    env.setenv("TPS_MAX_TOP_K", "50")
    env.setenv("TPS_BATCHING", "false")
    env.setenv("TPS_BATCH_MAX_WAIT_MS", "2.5")
    env.setenv("TPS_DEVICE", "cpu")
    s = Settings()
    assert s.bundle == tmp_path / "bundle"
    assert s.max_top_k == 50
    assert s.batching is False
    assert s.batch_max_wait_ms == 2.5
    assert s.device == "cpu"


def test_image_dir_defaults_inside_the_index(env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert Settings().images_path == tmp_path / "index" / "images"
    env.setenv("TPS_IMAGE_DIR", str(tmp_path / "uploads"))
    assert Settings().images_path == tmp_path / "uploads"


def test_api_key_is_secret_and_blank_means_none(env: pytest.MonkeyPatch) -> None:
    assert Settings().api_key is None
    assert not Settings().writes_enabled
    env.setenv("TPS_API_KEY", "   ")
    assert Settings().api_key is None
    env.setenv("TPS_API_KEY", "hunter2")
    s = Settings()
    assert s.writes_enabled
    assert s.api_key is not None and s.api_key.get_secret_value() == "hunter2"
    assert "hunter2" not in repr(s) and "hunter2" not in str(s.model_dump())


def test_cors_origins_are_comma_separated(env: pytest.MonkeyPatch) -> None:
    assert Settings().cors_origins == []
    env.setenv("TPS_CORS_ORIGINS", "https://a.example, https://b.example")
    assert Settings().cors_origins == ["https://a.example", "https://b.example"]


def test_bundle_and_a_store_are_required(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("TPS_BUNDLE", "TPS_INDEX_DIR", "TPS_STORE"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ValidationError) as err:
        Settings()
    assert {e["loc"][0] for e in err.value.errors()} == {"bundle"}
    monkeypatch.setenv("TPS_BUNDLE", "b")
    with pytest.raises(ValidationError, match=r"set TPS_INDEX_DIR .* or TPS_STORE"):
        Settings()


def test_without_tps_store_the_index_folder_is_the_store(
    env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    s = Settings()
    assert s.store is None and s.store_kind == "faiss"
    assert s.store_spec == str(tmp_path / "index") and s.sweep_grace_s == 0
    assert s.store_setting == f"TPS_INDEX_DIR={tmp_path / 'index'}"


@pytest.mark.parametrize(
    ("store", "kind", "images"),
    [
        ("milvus://milvus-standalone:19530/gallery", "milvus", None),
        ("milvus://127.0.0.1:19530", "milvus", None),
        ("{tmp}/gallery.db", "milvus-lite", "{tmp}/gallery-images"),
        ("{tmp}/folder", "faiss", "{tmp}/folder/images"),
    ],
)
def test_tps_store_forms(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, store: str, kind: str, images: str | None
) -> None:
    for name in ("TPS_INDEX_DIR", "TPS_IMAGE_DIR", "TPS_STORE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TPS_BUNDLE", "b")
    monkeypatch.setenv("TPS_STORE", store.format(tmp=tmp_path))
    if images is None:  # a server: the replicas' shared image folder must be named
        with pytest.raises(ValidationError, match="TPS_IMAGE_DIR is required"):
            Settings()
        monkeypatch.setenv("TPS_IMAGE_DIR", str(tmp_path / "shared"))
        images = "{tmp}/shared"
    s = Settings()
    assert s.store_kind == kind and s.store_spec == store.format(tmp=tmp_path)
    assert s.images_path == Path(images.format(tmp=tmp_path))
    assert s.sweep_grace_s == (900 if kind == "milvus" else 0)


@pytest.mark.parametrize(
    ("store", "needle"),
    [
        ("http://host:19530", "unknown store"),
        ("milvus://host", "expected milvus://HOST:PORT"),
        ("milvus://host:19530/1bad", "collection name"),
    ],
)
def test_bad_store_settings_are_refused(env: pytest.MonkeyPatch, store: str, needle: str) -> None:
    env.delenv("TPS_INDEX_DIR")
    env.setenv("TPS_STORE", store)
    with pytest.raises(ValidationError, match=needle):
        Settings()


def test_a_milvus_store_and_an_index_folder_conflict(env: pytest.MonkeyPatch) -> None:
    env.setenv("TPS_STORE", "milvus://127.0.0.1:19530/gallery")
    env.setenv("TPS_IMAGE_DIR", "/shared")
    with pytest.raises(ValidationError, match="unset TPS_INDEX_DIR"):
        Settings()
    env.setenv("TPS_STORE", "/somewhere/else")
    with pytest.raises(ValidationError, match="different folders"):
        Settings()
    env.setenv("TPS_ORPHAN_GRACE_S", "5")
    env.delenv("TPS_STORE")
    assert Settings().sweep_grace_s == 5


@pytest.mark.parametrize(
    ("name", "value"),
    [("TPS_DEVICE", "tpu"), ("TPS_MAX_TOP_K", "0"), ("TPS_BATCH_MAX_SIZE", "0")],
)
def test_bad_values_are_refused(env: pytest.MonkeyPatch, name: str, value: str) -> None:
    env.setenv(name, value)
    with pytest.raises(ValidationError):
        Settings()


def test_batch_request_must_fit_the_queue(env: pytest.MonkeyPatch) -> None:
    env.setenv("TPS_BATCH_QUEUE_SIZE", "8")
    env.setenv("TPS_MAX_BATCH_QUERIES", "16")
    with pytest.raises(ValidationError, match="could never be queued"):
        Settings()


def test_runtime_and_trimming_settings(env: pytest.MonkeyPatch) -> None:
    env.delenv("TPS_RUNTIME", raising=False)
    env.delenv("TPS_TRIM_TEXT", raising=False)
    assert (Settings().runtime, Settings().trim_text) == ("torch", True)
    env.setenv("TPS_RUNTIME", "onnx-int8")
    env.setenv("TPS_TRIM_TEXT", "false")
    assert (Settings().runtime, Settings().trim_text) == ("onnx-int8", False)
    env.setenv("TPS_RUNTIME", "tensorrt")
    with pytest.raises(ValidationError, match="runtime"):
        Settings()


def test_the_int8_check_encodes_at_the_batch_sizes_the_service_uses(
    env: pytest.MonkeyPatch,
) -> None:
    """bundle.int8 cannot read the service's settings (data flows one way): its default batch
    sizes are kept equal to one query, a full micro-batch and the largest batch request here."""
    from bundle.int8 import CHECK_BATCHES

    s = Settings()
    assert (1, s.batch_max_size, s.max_batch_queries) == CHECK_BATCHES
