"""The locks: compiled from today's pyproject.toml, hash-pinned, and what this environment is."""

from __future__ import annotations

import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from locks import spec
from locks.select import main as select_main
from locks.sync import KEEP, PROJECT

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("target", spec.TARGETS, ids=lambda t: t.name)
def test_each_lock_was_compiled_from_this_pyproject(target: spec.LockTarget) -> None:
    assert target.path.is_file(), f"{target.path.name} missing: run `make lock`"
    assert spec.recorded_digest(target.path) == spec.digest(target), (
        f"pyproject.toml changed since {target.path.name} was compiled: run `make lock`"
    )


@pytest.mark.parametrize("target", spec.TARGETS, ids=lambda t: t.name)
def test_every_requirement_of_pyproject_is_satisfied_by_the_lock(target: spec.LockTarget) -> None:
    inputs = spec.inputs(target)
    wanted = [*inputs["dependencies"], *inputs["build"]]
    for extra in inputs["extras"].values():
        wanted += extra
    locked = spec.pins(target.path)
    for line in wanted:
        requirement = Requirement(line)
        name = spec.normalise(requirement.name)
        assert name in locked, f"{name} not in {target.path.name}"
        assert requirement.specifier.contains(locked[name], prereleases=True), (name, locked[name])


@pytest.mark.parametrize("target", spec.TARGETS, ids=lambda t: t.name)
def test_every_pin_is_exact_and_hashed(target: spec.LockTarget) -> None:
    blocks = spec.requirement_blocks(target.path)
    assert blocks.keys() == spec.pins(target.path).keys()
    for name, block in blocks.items():
        assert re.search(r"--hash=sha256:[0-9a-f]{64}", block), f"{name} has no hash"
    if target.local_torch:
        assert spec.pins(target.path)["torch"].endswith("+cpu")


def test_the_digest_changes_with_a_dependency() -> None:
    project = spec.pyproject()
    target = spec.TARGETS[0]
    before = spec.digest(target, project)
    project["project"]["dependencies"] = [*project["project"]["dependencies"], "rich==14.0.0"]
    assert spec.digest(target, project) != before


def test_this_environment_is_exactly_its_lock() -> None:
    """What `make install` promises: `pip freeze` of the virtualenv equals the lock."""
    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    flavour = "gpu" if _installed("faiss-gpu") else "cpu"
    lock = spec.target_for(flavour, python).path
    here = {
        spec.normalise(d.metadata["Name"]): d.version
        for d in metadata.distributions()
        if spec.normalise(d.metadata["Name"]) not in KEEP | {PROJECT}
    }
    assert here == spec.pins(lock), _difference(here, spec.pins(lock))


def test_device_wheels_are_the_versions_tested_here(capsys: pytest.CaptureFixture) -> None:
    """The wheels carried to a GPU machine's Python 3.12 are the versions CI tests on 3.11."""
    names = [
        line
        for line in (REPO / "bench" / "device_wheels.txt").read_text().splitlines()
        if line and not line.startswith("#")
    ]
    assert names
    assert select_main(["cpu-py312", *names]) == 0
    selected = capsys.readouterr().out
    cpu311 = spec.pins(spec.target_for("cpu", "3.11").path)
    for name in names:
        version = cpu311[spec.normalise(name)]
        assert f"{name}=={version} " in selected or f"{spec.normalise(name)}=={version} " in (
            selected
        ), name


def test_select_refuses_a_package_the_lock_does_not_have(capsys: pytest.CaptureFixture) -> None:
    assert select_main(["cpu-py312", "left-pad"]) == 2
    assert "left-pad" in capsys.readouterr().err


def test_sync_refuses_a_python_without_a_lock() -> None:
    done = subprocess.run(
        [sys.executable, "-c", "import sys; from locks.sync import main; sys.exit(main(['tpu']))"],
        cwd=REPO, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.startswith("error: usage")
    with pytest.raises(LookupError, match="locks: cpu-py311"):
        spec.target_for("cpu", "3.13")


def _installed(name: str) -> bool:
    try:
        metadata.distribution(name)
    except metadata.PackageNotFoundError:
        return False
    return True


def _difference(here: dict[str, str], locked: dict[str, str]) -> str:
    lines = [f"+ {n}=={v}" for n, v in sorted(here.items()) if locked.get(n) != v]
    lines += [f"- {n}=={v}" for n, v in sorted(locked.items()) if here.get(n) != v]
    return "\n".join(lines)
