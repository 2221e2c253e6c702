"""``python -m service audit export --out FILE.jsonl``: the audit trail as JSON lines.

The trail is TPS_AUDIT_DB, or where the service keeps it for the TPS_* settings in the
environment, unless ``--db`` names the file. The export is written atomically (a reader never
sees half of it); ``--out -`` writes to stdout.
"""

from __future__ import annotations

import json
import os
import sqlite3
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

from pydantic import ValidationError

from bundle.cli import OneLineParser, run_command
from bundle.fsio import replace_atomic
from index.metadata_fields import iso_seconds
from service.access.audit import query

PAGE = 1000


class AuditCliError(ValueError):
    pass


def _time(text: str) -> float:
    try:
        return iso_seconds(text)  # the one reading of a time (CLI, sidecars, API)
    except ValueError:
        raise AuditCliError(f"not an ISO 8601 time: {text!r}") from None


def _parser() -> OneLineParser:
    parser = OneLineParser(prog="python -m service audit", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    export = commands.add_parser("export", help="write entries as JSON lines")
    export.add_argument("--db", type=Path, help="the trail's SQLite file (default: settings)")
    export.add_argument("--since", help="ISO 8601 time (no zone: UTC)")
    export.add_argument("--until", help="ISO 8601 time, exclusive")
    export.add_argument("--key", help="only this key name")
    export.add_argument("--action", help="only this action (search, view, upload, ...)")
    export.add_argument("--out", required=True, help="FILE.jsonl, or - for stdout")
    return parser


def default_db() -> Path:
    from service.settings import Settings

    try:
        return Settings().audit_path  # type: ignore[call-arg]  # from TPS_* env
    except ValidationError as err:
        raise AuditCliError(
            "no audit trail given: pass --db, or set the service's TPS_* settings "
            f"({err.errors()[0]['msg']})"
        ) from None


def configured_db() -> Path | None:
    """The trail the TPS_* environment names, or None (no settings, or TPS_AUDIT=false)."""
    from service.settings import Settings

    if os.environ.get("TPS_AUDIT_DB", "").strip():
        return Path(os.environ["TPS_AUDIT_DB"])
    try:
        settings = Settings()  # type: ignore[call-arg]  # from TPS_* env
    except ValidationError:
        return None
    return settings.audit_path if settings.audit else None


def entries(db: Path, **filters) -> Iterator[dict]:
    if not db.is_file():
        raise AuditCliError(f"no audit trail at {db}")
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        after = 0
        while page := query(conn, after_id=after, limit=PAGE, **filters):
            yield from page
            after = page[-1]["id"]
    finally:
        conn.close()


def _write(rows: Iterator[dict], out: TextIO) -> int:
    n = 0
    for row in rows:
        out.write(json.dumps(row, separators=(",", ":")) + "\n")
        n += 1
    return n


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)

    def command() -> int:
        filters = {
            "since": _time(args.since) if args.since else None,
            "until": _time(args.until) if args.until else None,
            "key": args.key,
            "action": args.action,
        }
        rows = entries(args.db or default_db(), **filters)
        if args.out == "-":
            count = _write(rows, sys.stdout)
        else:
            counted: list[int] = []

            def write(tmp: Path) -> None:
                tmp.chmod(0o600)  # who searched for whom: private like the trail itself
                with tmp.open("w") as fh:
                    counted.append(_write(rows, fh))

            replace_atomic(Path(args.out), write)
            count = counted[0]
        print(f"exported {count} audit entries", file=sys.stderr)
        return 0

    return run_command(command, (AuditCliError, sqlite3.Error, OSError))
