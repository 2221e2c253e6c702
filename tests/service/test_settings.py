"""Settings: environment parsing, derived defaults and refusals."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from service.settings import Settings


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    for name in ("TPS_API_KEY", "TPS_IMAGE_DIR", "TPS_CORS_ORIGINS", "TPS_BATCHING"):
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


def test_bundle_and_index_are_required(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TPS_BUNDLE", raising=False)
    monkeypatch.delenv("TPS_INDEX_DIR", raising=False)
    with pytest.raises(ValidationError) as err:
        Settings()
    missing = {e["loc"][0] for e in err.value.errors()}
    assert missing == {"bundle", "index_dir"}


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
