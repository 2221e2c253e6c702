"""What each lock file is for, and the digest of the inputs it was compiled from.

Every install of the project reads one of these locks: ``make install`` (here, CI and the
container image), ``make install FAISS=gpu`` and ``make device-wheels`` (a bare GPU machine's
Python 3.12). A lock's header records the digest of the inputs it was compiled from, so a
change to ``pyproject.toml`` that was not followed by ``make lock`` is caught offline.

Standard library only: ``make install`` runs this before anything is installed.
"""

from __future__ import annotations

import hashlib
import json
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LOCKS = REPO / "locks"
PYPROJECT = REPO / "pyproject.toml"
DIGEST_PREFIX = "# inputs-sha256: "
# The platform the wheels are chosen for: glibc 2.28 covers Debian 10+, Ubuntu 20.04+ and the
# manylinux_2_28 wheels that torch and faiss publish.
PLATFORM = "x86_64-manylinux_2_28"


@dataclass(frozen=True)
class LockTarget:
    """One way the project installs: a FAISS flavour on one Python."""

    flavour: str  # "cpu" or "gpu": the optional-dependency group with the FAISS wheel
    python: str  # "3.11" or "3.12"
    dev: bool  # with the test and lint tools (everything but the bare GPU machine's run)
    local_torch: bool  # torch's CPU build from the machine's wheel folder (find-links)

    @property
    def name(self) -> str:
        return f"{self.flavour}-py{self.python.replace('.', '')}"

    @property
    def path(self) -> Path:
        return LOCKS / f"requirements-{self.name}.txt"

    @property
    def extras(self) -> list[str]:
        return [self.flavour, "dev"] if self.dev else [self.flavour]


# Python 3.11: this machine, CI and the container image (the CPU torch is the local +cpu wheel).
# Python 3.12: the bare GPU machines bench/device_check.sh runs on; they bring their own CUDA
# torch, and the registry's torch is the one a 3.12 install would get.
TARGETS = (
    LockTarget("cpu", "3.11", dev=True, local_torch=True),
    LockTarget("gpu", "3.11", dev=True, local_torch=False),
    LockTarget("cpu", "3.12", dev=False, local_torch=False),
    LockTarget("gpu", "3.12", dev=False, local_torch=False),
)


def target_for(flavour: str, python: str) -> LockTarget:
    for target in TARGETS:
        if (target.flavour, target.python) == (flavour, python):
            return target
    known = ", ".join(t.name for t in TARGETS)
    raise LookupError(f"no lock for FAISS={flavour} on Python {python} (locks: {known})")


def pyproject() -> dict:
    return tomllib.loads(PYPROJECT.read_text())


def build_requires(project: dict | None = None) -> list[str]:
    """The build backend's requirements: locked too, so the editable install needs no resolver."""
    return list((project or pyproject())["build-system"]["requires"])


def inputs(target: LockTarget, project: dict | None = None) -> dict:
    """Everything in pyproject.toml that decides what this lock holds."""
    project = project or pyproject()
    optional = project["project"].get("optional-dependencies", {})
    return {
        "python": target.python,
        "platform": PLATFORM,
        "local_torch": target.local_torch,
        "dependencies": project["project"]["dependencies"],
        "extras": {name: optional[name] for name in target.extras},
        "build": build_requires(project),
    }


def digest(target: LockTarget, project: dict | None = None) -> str:
    canonical = json.dumps(inputs(target, project), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def recorded_digest(lock: Path) -> str | None:
    for line in lock.read_text().splitlines():
        if line.startswith(DIGEST_PREFIX):
            return line[len(DIGEST_PREFIX) :].strip()
    return None


_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)")


def normalise(name: str) -> str:
    """PEP 503 names: ``Open_Clip.Torch`` and ``open-clip-torch`` are one package."""
    return re.sub(r"[-_.]+", "-", name).lower()


def pins(lock: Path) -> dict[str, str]:
    """{normalised name: version} of every package the lock installs."""
    found = {}
    for line in lock.read_text().splitlines():
        match = _PIN.match(line)
        if match:
            found[normalise(match.group(1))] = match.group(2)
    return found


def requirement_blocks(lock: Path) -> dict[str, str]:
    """{normalised name: its lines in the lock (pin and hashes)}, for picking a subset."""
    blocks: dict[str, list[str]] = {}
    current: str | None = None
    for line in lock.read_text().splitlines():
        match = _PIN.match(line)
        if match:
            current = normalise(match.group(1))
            blocks[current] = [line]
        elif current and line.startswith("    --hash="):
            blocks[current].append(line)
        else:
            current = None
    return {name: "\n".join(lines) for name, lines in blocks.items()}
