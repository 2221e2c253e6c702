"""The keys file and its CLI: hashes only, mode 0600, one-line errors, revocation seen at once."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from service.access.audit import AuditLog
from service.access.keys import KeyRing, KeysFileError, create_key, hash_key, read_keys, revoke_key
from service.access.keys_cli import main as keys_main


def test_create_prints_the_key_once_and_stores_only_its_hash(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "keys.json"
    assert (
        keys_main(["--keys-file", str(path), "create", "--name", "alice", "--role", "reader"]) == 0
    )
    key = capsys.readouterr().out.strip()
    assert key.startswith("tps_") and len(key) > 40
    text = path.read_text()
    assert key not in text and hash_key(key) in text
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    [record] = read_keys(path)
    assert (record.name, record.role, record.revoked) == ("alice", "reader", False)
    assert keys_main(["--keys-file", str(path), "list"]) == 0
    listed = capsys.readouterr().out
    assert "alice\treader" in listed and key not in listed


def run(argv: list[str]) -> int:
    """The CLI's exit code, whether it returns it or argparse exits with it."""
    try:
        return keys_main(argv)
    except SystemExit as done:
        return int(done.code or 0)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["create", "--name", "bob", "--role", "root"], "invalid choice"),
        (["create", "--name", "bad name", "--role", "reader"], "bad key name"),
        (["create", "--name", "alice", "--role", "admin"], "exists already"),
        (["revoke", "nobody"], "no key named"),
    ],
)
def test_bad_input_is_one_line_and_changes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    path = tmp_path / "keys.json"
    create_key(path, "alice", "reader")
    before = path.read_bytes()
    capsys.readouterr()
    code = run(["--keys-file", str(path), *argv])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and message in err and err.count("\n") == 1
    assert path.read_bytes() == before


def test_no_keys_file_is_a_one_line_error(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TPS_KEYS_FILE", raising=False)
    assert keys_main(["list"]) == 2
    assert "TPS_KEYS_FILE" in capsys.readouterr().err


def test_the_ring_sees_a_revocation_at_the_next_lookup(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    alice = create_key(path, "alice", "writer")
    ring = KeyRing(path)
    found = ring.lookup(alice)
    assert found is not None and (found.name, found.role) == ("alice", "writer")
    assert ring.lookup(alice + "x") is None and ring.lookup("") is None
    bob = create_key(path, "bob", "admin")  # added while the ring is in use
    assert ring.lookup(bob) is not None
    revoke_key(path, "alice")
    assert ring.lookup(alice) is None
    assert json.loads(path.read_text())["keys"][0]["revoked"] is True
    path.unlink()  # no file: no keys, never the last ones read
    assert ring.lookup(bob) is None and not ring.has_keys


def test_key_changes_are_audited_when_a_trail_is_configured(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "audit.sqlite"
    monkeypatch.setenv("TPS_AUDIT_DB", str(db))
    path = str(tmp_path / "keys.json")
    assert keys_main(["--keys-file", path, "create", "--name", "carol", "--role", "writer"]) == 0
    assert keys_main(["--keys-file", path, "revoke", "carol"]) == 0
    key = capsys.readouterr().out.strip()
    trail = AuditLog(db)
    try:
        entries = trail.read()
    finally:
        trail.close()
    assert [(e["action"], e["details"]["name"]) for e in entries] == [
        ("key_create", "carol"),
        ("key_revoke", "carol"),
    ]
    assert all(e["key_name"].startswith("cli:") for e in entries)
    assert key not in db.read_bytes().decode(errors="replace")


@pytest.mark.parametrize("name", ["anonymous", "Retention"])
def test_the_trails_own_names_are_reserved(tmp_path: Path, name: str) -> None:
    with pytest.raises(KeysFileError, match="reserved"):
        create_key(tmp_path / "keys.json", name, "admin")
    assert not (tmp_path / "keys.json").exists()


def test_a_broken_keys_file_is_a_503_that_keeps_its_path_private(
    make_settings, tmp_path: Path
) -> None:
    from fastapi.testclient import TestClient

    from service.app import create_app
    from tests.service.support import wait_ready

    path = tmp_path / "keys.json"
    reader = {"X-API-Key": create_key(path, "rita", "reader")}
    with TestClient(create_app(make_settings(open_reads=False, keys_file=path))) as client:
        wait_ready(client)
        assert client.get("/v1/info", headers=reader).status_code == 200
        path.write_text("{not json")
        broken = client.get("/v1/info", headers=reader)
        assert broken.status_code == 503 and "TPS_KEYS_FILE" in broken.json()["detail"]
        assert str(tmp_path) not in broken.text
        create_key(tmp_path / "other.json", "x", "reader")
        (tmp_path / "other.json").replace(path)
        path.chmod(0o666)  # anyone could add a key of their own
        writable = client.get("/v1/info", headers=reader)
        assert writable.status_code == 503 and str(tmp_path) not in writable.text
