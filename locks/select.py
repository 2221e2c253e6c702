"""Print a subset of a lock (pins and hashes), for installs that take only some packages.

    python -m locks.select LOCK_NAME NAME...    e.g. cpu-py312 open-clip-torch faiss-cpu

``make device-wheels`` downloads what a bare GPU machine lacks this way: the versions and hashes
are the lock's, so there is no second list of versions to keep in step.
"""

from __future__ import annotations

import sys

from locks.spec import TARGETS, normalise, requirement_blocks


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    targets = {t.name: t for t in TARGETS}
    if len(args) < 2 or args[0] not in targets:
        print(f"error: usage: python -m locks.select {'|'.join(targets)} NAME...", file=sys.stderr)
        return 2
    blocks = requirement_blocks(targets[args[0]].path)
    missing = [name for name in args[1:] if normalise(name) not in blocks]
    if missing:
        print(f"error: not in {args[0]}: {' '.join(missing)}", file=sys.stderr)
        return 2
    print("\n".join(blocks[normalise(name)] for name in args[1:]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
