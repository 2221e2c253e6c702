"""The scaled-out compose files: Milvus standalone (etcd, MinIO) plus two API replicas over one
gallery, and their GPU override. The same checks as compose.yaml's (tests/docker/
test_compose.py), then what sharing one gallery needs."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from tests.docker.files import (
    COMPOSE,
    COMPOSE_MILVUS,
    COMPOSE_MILVUS_GPU,
    interpolate,
    variables,
)
from tests.docker.test_compose import BASE, _errors, _load, _merge, _split_volume, _volumes

MILVUS = interpolate(_load(COMPOSE_MILVUS))
MILVUS_GPU = interpolate(_load(COMPOSE_MILVUS_GPU))
MERGED = _merge(MILVUS, MILVUS_GPU)
REPLICAS = ("api-1", "api-2")
STORE = "milvus://milvus-standalone:19530/gallery"


@pytest.mark.parametrize(
    ("name", "document"),
    [
        ("compose.milvus.yaml as written", _load(COMPOSE_MILVUS)),
        ("compose.milvus.gpu.yaml as written", _load(COMPOSE_MILVUS_GPU)),
        ("compose.milvus.yaml with defaults", MILVUS),
        ("compose.milvus.gpu.yaml with defaults", MILVUS_GPU),
        ("compose.milvus.yaml + compose.milvus.gpu.yaml", MERGED),
    ],
)
def test_matches_the_compose_specification(name: str, document: dict) -> None:
    assert _errors(document) == []


@pytest.mark.parametrize("path", [COMPOSE_MILVUS, COMPOSE_MILVUS_GPU])
def test_every_variable_has_a_default(path: Path) -> None:
    text = path.read_text()
    for m in variables(text):
        assert m.group(2) in (":-", "-"), f"{m.group(0)} needs a default"
    assert not re.search(r"\$(?!\{|\$)\w", text)


@pytest.mark.parametrize(
    ("document", "service", "repository"),
    [
        (MILVUS, "milvus-standalone", "milvusdb/milvus"),
        (MILVUS, "etcd", "quay.io/coreos/etcd"),
        (MILVUS, "minio", "minio/minio"),
        (MERGED, "milvus-standalone", "milvusdb/milvus"),
    ],
)
def test_third_party_images_are_pinned(document: dict, service: str, repository: str) -> None:
    image = document["services"][service]["image"]
    name, _, tag = image.rpartition(":")
    assert name == repository and tag and tag != "latest", image
    assert re.fullmatch(r"v\d+\.\d+\.\d+(-gpu)?|RELEASE\.[0-9TZ-]+", tag), image


def test_milvus_runs_as_its_own_standalone_compose_does() -> None:
    milvus = MILVUS["services"]["milvus-standalone"]
    assert milvus["command"] == ["milvus", "run", "standalone"]
    assert milvus["environment"]["ETCD_ENDPOINTS"] == "etcd:2379"
    assert milvus["environment"]["MINIO_ADDRESS"] == "minio:9000"
    assert milvus["depends_on"] == {
        "etcd": {"condition": "service_healthy"},
        "minio": {"condition": "service_healthy"},
    }
    assert "http://localhost:9091/healthz" in milvus["healthcheck"]["test"]
    assert [p.rsplit(":", 1)[1] for p in milvus["ports"]] == ["19530"]
    assert milvus["ports"][0].startswith("127.0.0.1:"), "loopback unless MILVUS_BIND says"
    assert "ports" not in MILVUS["services"]["minio"], "MinIO's default keys stay inside"
    for service, target in (("milvus-standalone", "/var/lib/milvus"), ("etcd", "/etcd")):
        [volume] = MILVUS["services"][service]["volumes"]
        source, mount, _ = _split_volume(volume)
        assert mount == target and source in MILVUS["volumes"], "data in named volumes"


def test_two_replicas_share_one_store_and_one_image_folder() -> None:
    replicas = [MILVUS["services"][name] for name in REPLICAS]
    api = BASE["services"]["api"]
    for replica in replicas:
        env = replica["environment"]
        assert env["TPS_STORE"] == STORE and "TPS_INDEX_DIR" not in env
        assert replica["image"] == api["image"] and replica["build"] == api["build"]
        assert replica["command"] == ["serve"] and replica["restart"] == "unless-stopped"
        assert replica["healthcheck"] == api["healthcheck"]
        assert replica["depends_on"] == {"milvus-standalone": {"condition": "service_healthy"}}
        mounts = _volumes(replica)
        assert mounts[env["TPS_IMAGE_DIR"]][1], "the shared image folder is writable"
        # Same host folders at the same container paths as compose.yaml's API: the image paths
        # an index recorded there (/data/..., /uploads/...) resolve here too.
        for target in ("/data", "/uploads", "/bundles"):
            assert mounts[target] == _volumes(api)[target], target
        assert _load(COMPOSE_MILVUS)["x-api"]["environment"]["TPS_API_KEY"] == "${TPS_API_KEY:-}"
    first, second = (_volumes(r)[r["environment"]["TPS_IMAGE_DIR"]] for r in replicas)
    assert first == second, "one image folder for every replica"
    ports = [r["ports"][0].rsplit(":", 2) for r in replicas]
    assert ports[0][1] != ports[1][1] and ports[0][2] == ports[1][2] == "8000"
    host, _, _ = STORE.removeprefix("milvus://").partition(":")
    assert host in MILVUS["services"], "TPS_STORE names the Milvus service"


@pytest.mark.parametrize("document", [MILVUS, MERGED], ids=["cpu", "gpu"])
def test_replica_settings_are_the_service_settings(
    monkeypatch: pytest.MonkeyPatch, document: dict
) -> None:
    from service.settings import Settings

    env = document["services"]["api-1"]["environment"]
    fields = {f"TPS_{name.upper()}" for name in Settings.model_fields}
    assert set(env) <= fields, f"unknown settings: {sorted(set(env) - fields)}"
    for name in [k for k in os.environ if k.startswith("TPS_")]:
        monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, str(value))
    settings = Settings()  # type: ignore[call-arg]  # fields come from TPS_* env
    assert settings.store_kind == "milvus" and settings.store_spec == STORE
    assert str(settings.images_path) == env["TPS_IMAGE_DIR"]
    assert settings.api_key is None and settings.create_store is False
    assert settings.sweep_grace_s > 0, "a shared folder is swept with a grace period"


def test_the_index_job_migrates_into_the_served_store() -> None:
    from index.cli import build_parser

    job = MILVUS["services"]["index"]
    assert job["profiles"] == ["index"] and job["restart"] == "no"
    assert job["entrypoint"] == ["/app/docker/entrypoint.sh", "index"]
    args = build_parser().parse_args(job["command"])
    assert args.command == "migrate" and args.dst == STORE
    # The folder index compose.yaml builds, at the path it builds it.
    assert args.src == BASE["services"]["index"]["command"][-1]
    mounts = _volumes(job)
    assert any(args.src.startswith(target + "/") for target in mounts)
    for target in ("/data", "/uploads", "/indexes", "/bundles"):
        assert mounts[target][0] == _volumes(BASE["services"]["index"])[target][0], target


def test_gpu_override() -> None:
    for name, service in MILVUS_GPU["services"].items():
        assert name in MILVUS["services"], f"{name} is not in compose.milvus.yaml"
        [device] = service["deploy"]["resources"]["reservations"]["devices"]
        assert device["driver"] == "nvidia" and device["capabilities"] == ["gpu"]
    milvus = MERGED["services"]["milvus-standalone"]
    assert milvus["image"].endswith("-gpu")
    assert milvus["image"].removesuffix("-gpu") == MILVUS["services"]["milvus-standalone"]["image"]
    for name in REPLICAS:
        replica = MERGED["services"][name]
        assert replica["image"].endswith(":cuda") and replica["build"]["args"] == {"DEVICE": "cuda"}
        assert replica["build"]["context"] == ".."
        assert replica["environment"]["TPS_DEVICE"] == "cuda"
        assert replica["environment"]["TPS_STORE"] == STORE  # merged, not replaced
        assert replica["environment"]["TPS_CREATE_STORE_KIND"] == "gpu_cagra"


def test_compose_yaml_is_untouched_by_the_milvus_files() -> None:
    assert "milvus" not in COMPOSE.read_text().lower()
