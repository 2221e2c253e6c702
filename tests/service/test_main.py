"""`python -m service` refuses to start, with one `error:` line and exit 2, on what would leave it
open: a weak key off loopback, a keys file that is malformed or that others may rewrite."""

from __future__ import annotations

from pathlib import Path

import pytest

from service.__main__ import main
from service.access.keys import create_key


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    for name in ("TPS_API_KEY", "TPS_KEYS_FILE", "TPS_OPEN_READS", "TPS_READ_REQUIRES_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TPS_BUNDLE", str(tmp_path / "bundle"))
    monkeypatch.setenv("TPS_INDEX_DIR", str(tmp_path / "index"))
    return monkeypatch


def refused(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    [line] = err.splitlines()
    assert line.startswith("python -m service: error: ") and "Traceback" not in err
    return line


@pytest.mark.parametrize("key", ["demo-key", "a-key-of-31-characters-_______"])
def test_a_weak_key_does_not_start_off_loopback(
    env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], key: str
) -> None:
    env.setenv("TPS_API_KEY", key)
    line = refused(capsys, ["--host", "0.0.0.0", "--port", "0"])
    assert "demo key" in line or "shorter than 32 characters" in line
    assert key not in line


def test_a_malformed_keys_file_is_one_line(
    env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    keys = tmp_path / "keys.json"
    keys.write_text('{"keys": [{"name": "x"')
    keys.chmod(0o600)
    env.setenv("TPS_KEYS_FILE", str(keys))
    assert "is not valid" in refused(capsys, ["--port", "0"])


def test_a_keys_file_others_may_rewrite_is_refused(
    env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    keys = tmp_path / "keys.json"
    create_key(keys, "alice", "admin")
    keys.chmod(0o620)
    env.setenv("TPS_KEYS_FILE", str(keys))
    assert "writable by group or others" in refused(capsys, ["--port", "0"])
