"""``python -m service keys create|list|revoke``: manage the named keys of the keys file.

The file is TPS_KEYS_FILE unless ``--keys-file`` names another. A running service picks up every
change at its next request (keys.py), so a revoked key is refused at once. Creations and
revocations are recorded in the audit trail (as ``cli:USER``) when one is configured: TPS_AUDIT_DB,
or the service's TPS_* settings in the environment.
"""

from __future__ import annotations

import getpass
import os
import sys
from datetime import UTC, datetime
from pathlib import Path

from bundle.cli import OneLineParser, run_command
from service.access.audit import AuditLog, Entry
from service.access.keys import ROLES, KeysFileError, create_key, read_keys, revoke_key


class NoKeysFileError(ValueError):
    pass


def _parser() -> OneLineParser:
    parser = OneLineParser(prog="python -m service keys", description=__doc__)
    parser.add_argument("--keys-file", type=Path, help="default: TPS_KEYS_FILE")
    commands = parser.add_subparsers(dest="command", required=True)
    create = commands.add_parser("create", help="add a key and print it (the only time it shows)")
    create.add_argument("--name", required=True, help="shown in logs and the audit trail")
    create.add_argument("--role", required=True, choices=ROLES)
    commands.add_parser("list", help="names, roles, creation times; never the keys")
    revoke = commands.add_parser("revoke", help="refuse a key from the next request on")
    revoke.add_argument("name")
    return parser


def _when(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _audit(action: str, details: dict) -> None:
    """Record a key change in the trail the service writes to, when one is configured."""
    from service.access.audit_cli import configured_db

    db = configured_db()
    if db is None or not (db.exists() or db.parent.is_dir()):
        return
    trail = AuditLog(db)
    try:
        trail.record_now(Entry(f"cli:{getpass.getuser()}", "admin", None, action, details))
    finally:
        trail.close()


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)

    def command() -> int:
        path = args.keys_file or (Path(v) if (v := os.environ.get("TPS_KEYS_FILE")) else None)
        if path is None:
            raise NoKeysFileError("no keys file: pass --keys-file or set TPS_KEYS_FILE")
        if args.command == "create":
            key = create_key(path, args.name, args.role)
            # Shown before anything else can fail: the key works from now on and is stored
            # nowhere, so a failure to audit it must not leave a live key nobody has seen.
            print(key, flush=True)
            print(
                f"created {args.role} key {args.name!r} in {path}; it is shown only this once",
                file=sys.stderr,
            )
            _audit("key_create", {"name": args.name, "role": args.role})
        elif args.command == "list":
            for r in read_keys(path):
                state = f"revoked {_when(r.revoked_at)}" if r.revoked else "active"
                print(f"{r.name}\t{r.role}\tcreated {_when(r.created_at)}\t{state}")
        else:
            record = revoke_key(path, args.name)
            _audit("key_revoke", {"name": record.name, "role": record.role})
            print(f"revoked {record.name!r} ({record.role})", file=sys.stderr)
        return 0

    return run_command(command, (KeysFileError, NoKeysFileError, OSError))
