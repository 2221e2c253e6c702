"""docker/entrypoint.sh: lint, the commands it runs exist, and each job dispatches as documented."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.docker.files import ENTRYPOINT, ROOT

ENV = {**os.environ, "HF_HUB_OFFLINE": "1"}


def _python_commands() -> set[tuple[str, ...]]:
    """Every `python -m MODULE [SUBCOMMAND]` and `torchrun ... -m MODULE [SUBCOMMAND]`."""
    found = set()
    for line in ENTRYPOINT.read_text().splitlines():
        if line.lstrip().startswith("#"):
            continue
        for m in re.finditer(r"\b(?:python|torchrun)\b.*?-m ([\w.]+)((?: [a-z][\w-]*)?)", line):
            found.add((m.group(1), *m.group(2).split()))
    return found


def test_shellcheck_finds_nothing() -> None:
    shellcheck = shutil.which("shellcheck") or shutil.which(
        "shellcheck", path=str(Path(sys.executable).parent)
    )
    if shellcheck is None:
        pytest.fail("shellcheck is missing: install the dev extra (make install)")
    result = subprocess.run([shellcheck, str(ENTRYPOINT)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_is_executable_in_the_repository() -> None:
    assert os.access(ENTRYPOINT, os.X_OK)
    mode = subprocess.run(
        ["git", "ls-files", "-s", "docker/entrypoint.sh"], cwd=ROOT, capture_output=True, text=True
    ).stdout.split()
    if mode:  # tracked: git must record it executable too (the Dockerfile also sets 755)
        assert mode[0] == "100755"


def test_runs_the_three_entry_points() -> None:
    commands = _python_commands()
    assert {("training", "train"), ("index",), ("service",)} <= commands


@pytest.mark.parametrize("command", sorted(_python_commands()), ids=" ".join)
def test_each_entry_point_exists_and_takes_help(command: tuple[str, ...]) -> None:
    result = subprocess.run(
        [sys.executable, "-m", *command, "--help"],
        cwd=ROOT,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "usage:" in result.stdout


@pytest.fixture
def recorder(tmp_path: Path) -> Path:
    """`python` and `torchrun` stand-ins that print their arguments, first on PATH."""
    for name in ("python", "torchrun"):
        stub = tmp_path / name
        stub.write_text(f'#!/bin/sh\necho {name} "$@"\n')
        stub.chmod(0o755)
    return tmp_path


def _entry(recorder: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in ENV.items() if k != "NPROC_PER_NODE"}
    environ.update(env, PATH=f"{recorder}:{environ['PATH']}")
    return subprocess.run(
        ["sh", str(ENTRYPOINT), *args], env=environ, capture_output=True, text=True, timeout=30
    )


@pytest.mark.parametrize(
    ("args", "env", "expected"),
    [
        ((), {}, "python -m service --host 0.0.0.0 --port 8000"),
        (
            ("serve", "--log-level", "debug"),
            {},
            "python -m service --host 0.0.0.0 --port 8000 --log-level debug",
        ),
        (("train", "--epochs", "1"), {}, "python -m training train --epochs 1"),
        (
            ("train", "--epochs", "1"),
            {"NPROC_PER_NODE": "1"},
            "python -m training train --epochs 1",
        ),
        (
            ("train", "--config", "c.yaml"),
            {"NPROC_PER_NODE": "4"},
            "torchrun --standalone --nproc-per-node 4 -m training train --config c.yaml",
        ),
        (
            ("train",),
            {"NPROC_PER_NODE": "gpu"},
            "torchrun --standalone --nproc-per-node gpu -m training train",
        ),
        (("index", "info", "/indexes/x"), {}, "python -m index info /indexes/x"),
        (("evaluate", "--split", "test"), {}, "python -m training evaluate --split test"),
        (("export", "--out", "/bundles/x"), {}, "python -m training export --out /bundles/x"),
    ],
)
def test_dispatches_each_job(
    recorder: Path, args: tuple[str, ...], env: dict[str, str], expected: str
) -> None:
    result = _entry(recorder, *args, **env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == expected


def test_unknown_job_prints_usage(recorder: Path) -> None:
    result = _entry(recorder, "trian")
    assert result.returncode == 64
    assert "unknown job 'trian'" in result.stderr
    assert "usage:" in result.stderr and "train" in result.stderr
    assert result.stdout == ""


def test_help_lists_the_jobs(recorder: Path) -> None:
    result = _entry(recorder, "help")
    assert result.returncode == 0
    for job in ("serve", "train", "index", "evaluate", "export"):
        assert re.search(rf"^\s+{job}\b", result.stdout, flags=re.M), job


@pytest.mark.parametrize("value", ["0", "x", "-2", "100", "2 --foo"])
def test_rejects_a_bad_process_count(recorder: Path, value: str) -> None:
    result = _entry(recorder, "train", NPROC_PER_NODE=value)
    assert result.returncode == 64
    assert "NPROC_PER_NODE" in result.stderr


def test_torchrun_takes_the_launch_flags() -> None:
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent))
    assert torchrun, "torchrun comes with torch"
    flags = re.search(r"exec torchrun (.*?) -m ", ENTRYPOINT.read_text())
    assert flags
    result = subprocess.run([torchrun, "--help"], capture_output=True, text=True, timeout=120)
    for flag in flags.group(1).split():
        if flag.startswith("--"):
            assert flag in result.stdout, flag
