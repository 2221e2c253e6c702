"""The compose files: the Compose Specification's schema, then what each service must have."""

from __future__ import annotations

import copy
import json
import os
import re
import shlex
import subprocess
from importlib.resources import files
from pathlib import Path

import jsonschema
import pytest
import yaml

from tests.docker.files import COMPOSE, COMPOSE_GPU, ROOT, interpolate, variables

# The official compose-spec.json, as vendored (with its licence) by check-jsonschema.
SCHEMA = json.loads(
    (files("check_jsonschema") / "builtin_schemas" / "vendor" / "compose-spec.json").read_text()
)
VALIDATOR = jsonschema.validators.validator_for(SCHEMA)(SCHEMA)


def _load(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


BASE = interpolate(_load(COMPOSE))
GPU = interpolate(_load(COMPOSE_GPU))


def _merge(base: object, override: object) -> object:
    """Compose's merge for what these files use: mappings merge, anything else is replaced."""
    if isinstance(base, dict) and isinstance(override, dict):
        out = dict(base)
        for key, value in override.items():
            out[key] = _merge(base[key], value) if key in base else copy.deepcopy(value)
        return out
    return copy.deepcopy(override)


MERGED = _merge(BASE, GPU)


def _errors(document: object) -> list[str]:
    return [
        f"{'/'.join(map(str, e.absolute_path)) or '(top)'}: {e.message}"
        for e in VALIDATOR.iter_errors(document)
    ]


def _volumes(service: dict) -> dict[str, tuple[str, bool]]:
    """container path -> (host path, writable), from the short syntax."""
    out = {}
    for spec in service.get("volumes", []):
        source, target, mode = _split_volume(spec)
        out[target] = (source, mode != "ro")
    return out


def _split_volume(spec: str) -> tuple[str, str, str]:
    """SOURCE:TARGET[:MODE], where SOURCE may be a ${VAR:-default} holding a colon."""
    m = re.fullmatch(r"(\$\{[^}]*\}|[^:]+):([^:]+)(?::(\w+))?", spec)
    assert m, f"not a short-syntax volume: {spec}"
    return m.group(1), m.group(2), m.group(3) or "rw"


def _under(path: str, mounts: dict[str, tuple[str, bool]], writable: bool = False) -> bool:
    return any(
        (path == target or path.startswith(target + "/")) and (rw or not writable)
        for target, (_, rw) in mounts.items()
    )


@pytest.mark.parametrize(
    ("name", "document"),
    [
        ("compose.yaml as written", _load(COMPOSE)),
        ("compose.gpu.yaml as written", _load(COMPOSE_GPU)),
        ("compose.yaml with defaults", BASE),
        ("compose.gpu.yaml with defaults", GPU),
        ("compose.yaml + compose.gpu.yaml", MERGED),
    ],
)
def test_matches_the_compose_specification(name: str, document: dict) -> None:
    assert _errors(document) == []


def test_the_schema_is_strict_enough_to_catch_a_typo() -> None:
    broken = copy.deepcopy(BASE)
    broken["services"]["api"]["restrat"] = "always"
    assert any("restrat" in e for e in _errors(broken))


@pytest.mark.parametrize("path", [COMPOSE, COMPOSE_GPU])
def test_every_variable_has_a_default(path: Path) -> None:
    text = path.read_text()
    for m in variables(text):
        assert m.group(2) in (":-", "-"), f"{m.group(0)} needs a default"
    # No bare $VAR: compose would read it, but the defaults above would not show.
    assert not re.search(r"\$(?!\{|\$)\w", text)


def test_host_folders_are_configurable_and_default_to_the_repository() -> None:
    raw = _load(COMPOSE)
    expected = {
        "/data": "DATA_DIR",
        "/weights": "WEIGHTS_DIR",
        "/runs": "RUNS_DIR",
        "/bundles": "BUNDLES_DIR",
        "/indexes": "INDEXES_DIR",
        "/uploads": "UPLOADS_DIR",
        "/keys": "KEYS_DIR",
        "/audit": "AUDIT_DIR",
    }
    seen = set()
    for service in raw["services"].values():
        for spec in service.get("volumes", []):
            source, target, _ = _split_volume(spec)
            assert target in expected, f"unexpected mount {spec}"
            folder = target.strip("/")
            # Relative paths in a compose file resolve against its folder: ../x is the repo's x.
            assert source == f"${{{expected[target]}:-../{folder}}}", spec
            seen.add(target)
    assert seen == set(expected)


def test_api_service() -> None:
    api = BASE["services"]["api"]
    assert "profiles" not in api, "the API starts with a plain `up`"
    assert api["command"] == ["serve"]
    assert [p.rsplit(":", 1)[1] for p in api["ports"]] == ["8000"]
    assert api["restart"] in ("always", "unless-stopped", "on-failure")
    mounts = _volumes(api)
    env = api["environment"]
    assert _under(env["TPS_BUNDLE"], mounts)
    assert _under(env["TPS_INDEX_DIR"], mounts, writable=True)  # uploads and deletes write it
    assert _under(env["TPS_IMAGE_DIR"], mounts, writable=True)
    assert "/data" in mounts, "gallery images indexed from /data are read from there"
    # The key comes from the caller's environment, never from the file.
    assert _load(COMPOSE)["services"]["api"]["environment"]["TPS_API_KEY"] == "${TPS_API_KEY:-}"
    assert "image" in api and "build" in api


@pytest.mark.parametrize(("document", "device"), [(BASE, "auto"), (MERGED, "cuda")])
def test_api_settings_are_the_service_settings(
    monkeypatch: pytest.MonkeyPatch, document: dict, device: str
) -> None:
    from service.settings import Settings

    env = document["services"]["api"]["environment"]
    fields = {f"TPS_{name.upper()}" for name in Settings.model_fields}
    assert set(env) <= fields, f"unknown settings: {sorted(set(env) - fields)}"
    for name in [k for k in os.environ if k.startswith("TPS_")]:
        monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, str(value))
    settings = Settings()  # type: ignore[call-arg]  # fields come from TPS_* env
    assert settings.api_key is None  # no key given: writes are refused, not open
    assert str(settings.images_path) == env["TPS_IMAGE_DIR"]
    assert settings.device == device


def test_api_healthcheck_asks_for_readiness() -> None:
    check = BASE["services"]["api"]["healthcheck"]
    assert check["test"][:3] == ["CMD", "python", "-c"]
    assert "http://127.0.0.1:8000/readyz" in check["test"][3]
    dockerfile = (ROOT / "docker" / "Dockerfile").read_text()
    assert check["test"][3] in dockerfile, "keep the image's and compose's probes the same"


@pytest.mark.parametrize("job", ["train", "index"])
def test_jobs_are_profiles_of_the_same_image(job: str) -> None:
    service = BASE["services"][job]
    api = BASE["services"]["api"]
    assert service["profiles"] == [job]
    assert service["entrypoint"] == ["/app/docker/entrypoint.sh", job]
    assert service["image"] == api["image"] and service["build"] == api["build"]
    assert service["healthcheck"] == {"disable": True}  # the image's probe is for the API
    assert service["restart"] == "no"
    assert service.get("shm_size"), "DataLoader workers need more than 64 MB of /dev/shm"


def test_default_train_command_parses_and_its_paths_are_mounted() -> None:
    from training.cli import build_parser

    train = BASE["services"]["train"]
    args = build_parser().parse_args(["train", *train["command"]])
    assert (ROOT / args.config).is_file()  # copied into /app/configs by the Dockerfile
    mounts = _volumes(train)
    root, pretrained, out = str(args.root), str(args.pretrained), str(args.out)
    assert _under(root, mounts) and _under(pretrained, mounts)
    assert _under(out, mounts, writable=True)
    assert pretrained.startswith("/weights/")
    assert train["environment"]["NPROC_PER_NODE"] == "1"


def test_default_index_command_parses_and_its_paths_are_mounted() -> None:
    from index.cli import build_parser

    index = BASE["services"]["index"]
    args = build_parser().parse_args(index["command"])
    assert args.command == "build"
    mounts = _volumes(index)
    bundle, root, out = str(args.bundle), str(args.root), str(args.out)
    assert _under(bundle, mounts) and _under(root, mounts)
    assert _under(out, mounts, writable=True)
    api_env = BASE["services"]["api"]["environment"]
    assert out == api_env["TPS_INDEX_DIR"] and bundle == api_env["TPS_BUNDLE"]
    # Same container paths as the API, so recorded image paths resolve there too.
    api_mounts = _volumes(BASE["services"]["api"])
    for target in ("/data", "/indexes", "/uploads", "/bundles"):
        assert mounts[target][0] == api_mounts[target][0], target


def test_the_camera_service_follows_a_stream_into_the_served_index() -> None:
    from index.cli import build_parser

    camera, api = BASE["services"]["camera"], BASE["services"]["api"]
    assert camera["profiles"] == ["camera"] and camera["image"] == api["image"]
    assert camera["entrypoint"] == ["/app/docker/entrypoint.sh", "index"]
    args = build_parser().parse_args(camera["command"])
    assert args.command == "footage" and args.sources == ["env:CAMERA_URL"]
    # The URL (and its password) stays out of the command line.
    assert "CAMERA_URL" in camera["environment"]
    assert str(args.out) == api["environment"]["TPS_INDEX_DIR"]
    assert str(args.bundle) == api["environment"]["TPS_BUNDLE"]
    mounts, api_mounts = _volumes(camera), _volumes(api)
    assert _under(str(args.out), mounts, writable=True)
    # The crops are read by the API from the same path.
    assert _under(str(args.crops), mounts, writable=True) and _under(str(args.crops), api_mounts)
    for target in ("/indexes", "/uploads", "/bundles"):
        assert mounts[target][0] == api_mounts[target][0], target
    assert camera["restart"] == "unless-stopped" and camera["healthcheck"] == {"disable": True}


def test_gpu_override() -> None:
    for name, service in GPU["services"].items():
        assert name in BASE["services"], f"{name} is not in compose.yaml"
        assert service["image"].endswith(":cuda")
        assert service["build"] == {"args": {"DEVICE": "cuda"}}
        [device] = service["deploy"]["resources"]["reservations"]["devices"]
        assert device["driver"] == "nvidia" and device["capabilities"] == ["gpu"]
        assert str(device["count"]) == "all" or int(device["count"]) >= 1
    assert set(GPU["services"]) == set(BASE["services"])
    assert BASE["services"]["api"]["image"].endswith(":cpu")
    assert BASE["services"]["api"]["build"]["args"] == {"DEVICE": "cpu"}
    assert MERGED["services"]["api"]["build"]["context"] == ".."
    assert MERGED["services"]["api"]["environment"]["TPS_DEVICE"] == "cuda"


def _make(*args: str) -> list[str]:
    out = subprocess.run(
        ["make", "-n", *args], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    return [line for line in out.splitlines() if re.search(r"\bdocker (build|compose) ", line)]


@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_make_targets(device: str) -> None:
    [build] = _make("docker-build", f"DEVICE={device}")
    words = shlex.split(build)
    assert words[:2] == ["docker", "build"] and words[-1] == "."
    assert words[words.index("-f") + 1] == "docker/Dockerfile"
    assert f"DEVICE={device}" in words and f"person-search:{device}" in words
    # The tag the build gives is the one compose runs.
    image = (MERGED if device == "cuda" else BASE)["services"]["api"]["image"]
    assert image == f"person-search:{device}"

    for target, service in (("docker-train", "train"), ("docker-index", "index")):
        [line] = _make(target, f"DEVICE={device}", "ARGS=--help")
        assert ("compose.gpu.yaml" in line) == (device == "cuda")
        assert line.endswith(f"run --rm {service} --help")
    [serve] = _make("docker-serve", f"DEVICE={device}")
    assert "up -d" in serve and serve.rstrip().endswith(" api")
