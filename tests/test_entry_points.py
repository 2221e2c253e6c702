"""The console scripts pyproject.toml declares are installed and reach the same commands."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_console_script_answers_help(name: str) -> None:
    script = Path(sys.executable).parent / name
    assert script.is_file(), f"{name} is not installed: run make install"
    done = subprocess.run(
        [str(script), "--help"],
        capture_output=True,
        text=True,
        timeout=120,
        env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 0, done.stderr
    assert "usage:" in done.stdout


def test_bad_input_is_one_line_and_exit_2_in_every_cli(tmp_path: Path) -> None:
    env = {"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"}
    bin_dir = Path(sys.executable).parent
    commands = {
        "tps-training": ["evaluate", "--bundle", str(tmp_path), "--dataset", "cuhk-pedes",
                         "--root", str(tmp_path)],
        "tps-index": ["info", str(tmp_path / "nowhere")],
        "tps-synthetic": ["--out", str(tmp_path), "--ids", "0", "--images-per-id", "1",
                          "--seed", "0"],
    }  # fmt: skip
    for name, args in commands.items():
        done = subprocess.run(
            [str(bin_dir / name), *args], capture_output=True, text=True, timeout=120, env=env
        )
        lines = done.stderr.strip().splitlines()
        assert done.returncode == 2, (name, done.stderr)
        assert len(lines) == 1 and lines[0].startswith("error: "), (name, done.stderr)
