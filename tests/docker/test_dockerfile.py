"""The Dockerfile: lint, the install command CI runs, user, volumes and the health check."""

from __future__ import annotations

import http.server
import json
import re
import shutil
import subprocess
import sys
import threading
import tomllib
from pathlib import Path

import pytest

from tests.docker.files import (
    DOCKERFILE,
    ROOT,
    arg_defaults,
    env_of,
    from_image,
    read_dockerfile,
    shell_commands,
    stage_names,
    stage_of,
)

INSTRUCTIONS = read_dockerfile()
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
# Anything that installs Python packages other than through the Makefile.
INSTALLERS = re.compile(r"^(pip\d*(\.\d+)?|uv|poetry|pdm|conda|mamba|micromamba|easy_install)$")


def _tool(name: str) -> str:
    found = shutil.which(name) or shutil.which(name, path=str(Path(sys.executable).parent))
    if found is None:
        pytest.fail(f"{name} is missing: install the dev extra (make install)")
    return found


def _final_stage() -> str:
    return stage_names(INSTRUCTIONS)[-1]


def _runs(stage: str | None = None) -> list[list[str]]:
    out = []
    for i in INSTRUCTIONS:
        if i.keyword == "RUN" and (stage is None or i.stage == stage):
            _, words = i.flags_and_words()
            out.extend(shell_commands(" ".join(words)))
    return out


def test_hadolint_finds_nothing() -> None:
    result = subprocess.run(
        [_tool("hadolint"), "--no-color", "--failure-threshold", "style", str(DOCKERFILE)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_hadolint_ignore_says_why() -> None:
    lines = DOCKERFILE.read_text().splitlines()
    for n, line in enumerate(lines):
        if "hadolint ignore=" in line:
            before = lines[n - 1].strip() if n else ""
            reason = before.lstrip("#").strip(" -")
            assert before.startswith("#") and reason and "hadolint" not in before, (
                f"line {n + 1}: explain the ignore in a comment on the line above"
            )


def _ci_install_commands() -> list[list[str]]:
    """The `make install` lines of .ci/run (what CI installs the project with)."""
    text = (ROOT / ".ci" / "run").read_text()
    commands = [c for line in text.splitlines() for c in shell_commands(line.split("#")[0])]
    return [c for c in commands if c[:2] == ["make", "install"]]


def _makefile_install_recipe() -> list[str]:
    """The recipe lines of the target `install` depends on."""
    text = (ROOT / "Makefile").read_text()
    [prereq] = re.findall(r"^install:\s*(\S+)\s*$", text, flags=re.M)
    m = re.search(rf"^{re.escape(prereq)}:.*\n((?:\t.*\n)+)", text, flags=re.M)
    assert m, f"no recipe for {prereq} in the Makefile"
    return [line.strip() for line in m.group(1).splitlines()]


def test_the_project_is_installed_with_the_command_ci_runs() -> None:
    ci = _ci_install_commands()
    assert ci, ".ci/run no longer runs `make install`"
    ci_command = ci[0]

    installs = [c for c in _runs() if c[:2] == ["make", "install"]]
    assert len(installs) == 1, f"expected exactly one `make install` RUN, got {installs}"
    [command] = installs
    # Only the faiss flavour may differ from CI's; it is a variable of that same recipe.
    assert command[: len(ci_command)] == ci_command
    extra = command[len(ci_command) :]
    assert all(re.fullmatch(r"FAISS=\S+", word) for word in extra), extra
    recipe = " ".join(_makefile_install_recipe())
    assert "$(FAISS)" in recipe, "the Makefile's install recipe no longer takes FAISS"

    # ...and nothing else installs Python packages, neither directly nor through python -m.
    for words in _runs():
        assert not INSTALLERS.match(Path(words[0]).name), f"RUN installs outside make: {words}"
        if Path(words[0]).name.startswith("python") and "-m" in words:
            module = words[words.index("-m") + 1]
            assert not INSTALLERS.match(module), f"RUN installs outside make: {words}"


def test_each_device_installs_its_faiss_extra() -> None:
    extras = PYPROJECT["project"]["optional-dependencies"]
    assert arg_defaults(INSTRUCTIONS)["DEVICE"] == "cpu"
    flavours = {"cpu": "cpu", "cuda": "gpu"}
    for device, faiss in flavours.items():
        env = env_of(INSTRUCTIONS, f"build-{device}")
        assert env.get("FAISS") == faiss, f"build-{device} must set FAISS={faiss}"
        assert faiss in extras and any(d.startswith("faiss") for d in extras[faiss])
        assert from_image(INSTRUCTIONS, f"build-{device}") == f"base-{device}"
    assert from_image(INSTRUCTIONS, "build") == "build-${DEVICE}"
    assert from_image(INSTRUCTIONS, _final_stage()) == "base-${DEVICE}"
    # The make install line passes the stage's flavour through.
    [make] = [c for c in _runs("build") if c[:2] == ["make", "install"]]
    assert "FAISS=${FAISS}" in make


def test_the_cpu_torch_index_is_only_in_the_cpu_build_stage() -> None:
    for name in stage_names(INSTRUCTIONS):
        has = "PIP_EXTRA_INDEX_URL" in env_of(INSTRUCTIONS, name)
        assert has == (name == "build-cpu"), name
    url = env_of(INSTRUCTIONS, "build-cpu")["PIP_EXTRA_INDEX_URL"]
    assert url.rstrip("/").endswith("/whl/cpu")
    assert "PIP_EXTRA_INDEX_URL" not in arg_defaults(INSTRUCTIONS)


def test_everything_the_install_needs_is_copied_before_it() -> None:
    copied: set[str] = set()
    for i in stage_of(INSTRUCTIONS, "build"):
        if i.keyword == "RUN" and "make install" in i.args:
            break
        if i.keyword == "COPY":
            _, words = i.flags_and_words()
            copied.update(w.rstrip("/") for w in words[:-1])
    else:
        pytest.fail("no make install in the build stage")
    packages = {
        p.rstrip("*") for p in PYPROJECT["tool"]["setuptools"]["packages"]["find"]["include"]
    }
    needed = {"pyproject.toml", "Makefile", "locks", PYPROJECT["project"]["readme"], *packages}
    assert needed <= copied, f"copy these before make install: {sorted(needed - copied)}"


def test_python_is_3_11_on_both_bases() -> None:
    args = arg_defaults(INSTRUCTIONS)
    assert re.fullmatch(r"python:3\.11[-.\w]*", args["PYTHON_IMAGE"])
    assert from_image(INSTRUCTIONS, "base-cpu") == "${PYTHON_IMAGE}"
    assert re.fullmatch(r"nvidia/cuda:12\.\d+\.\d+-[\w-]*ubuntu22\.04", args["CUDA_IMAGE"])
    assert from_image(INSTRUCTIONS, "base-cuda") == "${CUDA_IMAGE}"
    cuda_runs = [" ".join(c) for c in _runs("base-cuda")]
    assert any("python3.11-venv" in c for c in cuda_runs)
    assert any(c.endswith("/usr/local/bin/python3") for c in cuda_runs), "python3 must be 3.11"


def test_runs_as_a_non_root_user() -> None:
    users = [i for i in stage_of(INSTRUCTIONS, _final_stage()) if i.keyword == "USER"]
    assert users, "the runtime stage sets no USER"
    user = users[-1].args.split(":")[0]
    args = arg_defaults(INSTRUCTIONS)
    resolved = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], user)
    assert resolved not in ("root", "0"), resolved


def test_volumes_port_and_entrypoint() -> None:
    final = stage_of(INSTRUCTIONS, _final_stage())
    [volume] = [i for i in final if i.keyword == "VOLUME"]
    assert {"/data", "/runs", "/bundles", "/indexes"} <= set(json.loads(volume.args))
    assert [i.args for i in final if i.keyword == "EXPOSE"] == ["8000"]
    [entry] = [i for i in final if i.keyword == "ENTRYPOINT"]
    [cmd] = [i for i in final if i.keyword == "CMD"]
    assert entry.exec_form() == ["/app/docker/entrypoint.sh"]
    assert cmd.exec_form() == ["serve"]
    copies = [i.flags_and_words() for i in final if i.keyword == "COPY"]
    assert any(
        words == ["docker/entrypoint.sh", "/app/docker/entrypoint.sh"]
        and flags.get("chmod") == "755"
        for flags, words in copies
    )


def _healthcheck() -> list[str]:
    [check] = [i for i in INSTRUCTIONS if i.keyword == "HEALTHCHECK"]
    command = check.exec_form()
    assert command and command[:2] == ["python", "-c"], "HEALTHCHECK CMD [python, -c, ...]"
    return command


def test_healthcheck_asks_a_route_the_service_serves(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from service.app import create_app
    from service.settings import Settings

    code = _healthcheck()[2]
    m = re.search(r"http://(127\.0\.0\.1|localhost):(\d+)(/[\w/-]*)", code)
    assert m, code
    assert m.group(2) == "8000"
    assert m.group(3) == "/readyz"
    app = create_app(Settings(bundle=tmp_path / "bundle", index_dir=tmp_path / "index"))
    # No lifespan, so nothing loads: the route answers "not ready" rather than 404.
    response = TestClient(app).get("/readyz")
    assert response.status_code == 503, response.text
    assert "status" in response.json()


class _Status(http.server.BaseHTTPRequestHandler):
    code = 200

    def do_GET(self) -> None:
        self.send_response(self.code if self.path == "/readyz" else 404)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.mark.parametrize(("code", "healthy"), [(200, True), (503, False)])
def test_healthcheck_fails_until_ready(code: int, healthy: bool) -> None:
    handler = type("Handler", (_Status,), {"code": code})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        probe = _healthcheck()[2].replace(":8000/", f":{server.server_address[1]}/")
        result = subprocess.run([sys.executable, "-c", probe], capture_output=True, timeout=30)
    finally:
        server.shutdown()
        server.server_close()
    assert (result.returncode == 0) == healthy, result.stderr
