"""``python -m service retention [--dry-run] [--days N]``: remove gallery images past the
retention period now (what the running service does on its schedule), and audit entries past
TPS_AUDIT_RETENTION_DAYS.

Reads the service's TPS_* settings; the removals are recorded in the audit trail under the key
name ``cli:USER``. A running service over the same folder index picks the removal up at its next
index refresh (TPS_INDEX_REFRESH_S).
"""

from __future__ import annotations

import getpass
import json

from pydantic import ValidationError

from bundle.cli import OneLineParser, run_command
from index.errors import IndexStoreError
from index.stores import open_store
from service.access.audit import AuditLog
from service.access.retention import cutoff_for, sweep
from service.storage import ImageStore


class RetentionCliError(ValueError):
    pass


def _parser() -> OneLineParser:
    parser = OneLineParser(prog="python -m service retention", description=__doc__)
    parser.add_argument("--dry-run", action="store_true", help="list, remove nothing")
    parser.add_argument("--days", type=float, help="instead of TPS_RETENTION_DAYS")
    return parser


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)

    def command() -> int:
        from service.settings import Settings

        settings = Settings()  # type: ignore[call-arg]  # from TPS_* env
        days = args.days if args.days is not None else settings.retention_days
        if days is None or days <= 0:
            raise RetentionCliError("no retention period: set TPS_RETENTION_DAYS or pass --days")
        who = (f"cli:{getpass.getuser()}", "admin")
        trail = AuditLog(settings.audit_path, settings.audit_sync) if settings.audit else None
        store = open_store(settings.store_spec, use_gpu="never")
        images = ImageStore(settings.images_path)
        try:
            outcome = sweep(
                store, images, cutoff_for(days), trail=trail, who=who, dry_run=args.dry_run
            )
            if trail is not None and settings.audit_retention_days and not args.dry_run:
                trail.sweep(cutoff_for(settings.audit_retention_days), who[0], who[1])
        finally:
            images.close()
            store.close()
            if trail is not None:
                trail.close()
        print(json.dumps(outcome.as_dict()))
        return 0

    return run_command(command, (RetentionCliError, ValidationError, IndexStoreError, OSError))
