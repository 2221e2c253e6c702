"""``make install``: make this Python's environment exactly one lock, then add the project.

    python -m locks.sync FLAVOUR        (run with the virtualenv's own Python)

1. The lock for FAISS=FLAVOUR on this Python, checked against pyproject.toml (its digest).
2. Every installed package the lock does not name is removed (a switch of flavour, a package
   dropped from pyproject.toml, anything installed by hand).
3. ``pip install --require-hashes --no-deps -r LOCK``: no resolver runs, every file is checked
   against its hash.
4. The project itself, editable, with ``--no-deps --no-build-isolation`` (its build backend is
   in the lock too).

Standard library only: it runs before anything is installed.
"""

from __future__ import annotations

import subprocess
import sys
from importlib import metadata

from locks.spec import REPO, digest, normalise, pins, recorded_digest, target_for

PROJECT = "person-search"
KEEP = {"pip"}  # the installer itself is the virtualenv's, not the lock's


def fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 2


def installed() -> dict[str, str]:
    return {normalise(d.metadata["Name"]): d.version for d in metadata.distributions()}


def pip(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "pip", *args], check=True, cwd=REPO)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or args[0] not in ("cpu", "gpu"):
        return fail("usage: python -m locks.sync cpu|gpu")
    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    try:
        target = target_for(args[0], python)
    except LookupError as exc:
        return fail(str(exc))
    if not target.path.is_file():
        return fail(f"{target.path.relative_to(REPO)} is missing: run `make lock`")
    if recorded_digest(target.path) != digest(target):
        return fail(
            f"{target.path.relative_to(REPO)} was compiled from another pyproject.toml: "
            "run `make lock` and commit the locks"
        )
    wanted = pins(target.path)
    extra = sorted(set(installed()) - set(wanted) - KEEP - {PROJECT})
    if extra:
        print(f"removing {len(extra)} packages the lock does not name: {' '.join(extra)}")
        pip("uninstall", "-q", "-y", *extra)
    pip("install", "-q", "--require-hashes", "--no-deps", "-r", str(target.path))
    pip("install", "-q", "--no-deps", "--no-build-isolation", "-e", str(REPO))
    now = installed()
    drift = {n: (v, now.get(n)) for n, v in wanted.items() if now.get(n) != v}
    if drift:
        return fail(f"installed versions differ from the lock: {drift}")
    pip("check")
    print(f"installed {target.path.relative_to(REPO)}: {len(wanted)} packages, hash-checked")
    return 0


if __name__ == "__main__":
    sys.exit(main())
