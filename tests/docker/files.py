"""Readers for the container files, shared by the tests in this folder (no container engine)."""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"
DOCKERFILE = DOCKER / "Dockerfile"
ENTRYPOINT = DOCKER / "entrypoint.sh"
COMPOSE = DOCKER / "compose.yaml"
COMPOSE_GPU = DOCKER / "compose.gpu.yaml"
COMPOSE_MILVUS = DOCKER / "compose.milvus.yaml"
COMPOSE_MILVUS_GPU = DOCKER / "compose.milvus.gpu.yaml"


@dataclass(frozen=True)
class Instruction:
    stage: str  # the stage's name (FROM ... AS name), or its number
    keyword: str  # upper case: RUN, COPY, ...
    args: str  # the rest of the instruction, continuation lines joined
    line: int

    def flags_and_words(self) -> tuple[dict[str, str], list[str]]:
        """``--flag=value`` options (COPY --from, RUN --mount, ...) and the remaining words."""
        flags: dict[str, str] = {}
        words = self.args.split()
        while words and words[0].startswith("--"):
            name, _, value = words.pop(0)[2:].partition("=")
            flags[name] = value
        return flags, words

    def exec_form(self) -> list[str] | None:
        """The JSON array of an exec-form instruction (CMD, ENTRYPOINT, HEALTHCHECK ... CMD)."""
        text = self.args
        if self.keyword == "HEALTHCHECK":
            text = text.split(" CMD ", 1)[1] if " CMD " in text else ""
        text = text.strip()
        return json.loads(text) if text.startswith("[") else None


def read_dockerfile(path: Path = DOCKERFILE) -> list[Instruction]:
    """Instructions in order; comments dropped, backslash continuations joined."""
    out: list[Instruction] = []
    stage, stages, pending, start = "", 0, "", 0
    for number, raw in enumerate(path.read_text().splitlines(), start=1):
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue  # a comment inside a continued instruction
        if not pending:
            start = number
        if line.endswith("\\"):
            pending += line[:-1].strip() + " "
            continue
        text = (pending + line).strip()
        pending = ""
        keyword, _, args = text.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            words = args.split()
            alias = words[words.index("AS") + 1] if "AS" in words else str(stages)
            stage, stages = alias, stages + 1
        out.append(Instruction(stage, keyword, args.strip(), start))
    return out


def shell_commands(script: str) -> list[list[str]]:
    """A RUN line's simple commands as word lists, leading VAR=value assignments dropped."""
    commands = []
    for part in re.split(r"&&|\|\||;|\|", script):
        words = shlex.split(part)
        while words and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", words[0]):
            words.pop(0)
        if words:
            commands.append(words)
    return commands


def stage_of(instructions: list[Instruction], name: str) -> list[Instruction]:
    return [i for i in instructions if i.stage == name]


def stage_names(instructions: list[Instruction]) -> list[str]:
    return [i.stage for i in instructions if i.keyword == "FROM"]


def from_image(instructions: list[Instruction], stage: str) -> str:
    """What a stage is built FROM (its first word)."""
    [first] = [i for i in instructions if i.keyword == "FROM" and i.stage == stage]
    return first.args.split()[0]


def arg_defaults(instructions: list[Instruction]) -> dict[str, str]:
    """Global ARG defaults (those before the first FROM) plus every stage's, first one wins."""
    values: dict[str, str] = {}
    for i in instructions:
        if i.keyword == "ARG" and "=" in i.args:
            name, _, value = i.args.partition("=")
            values.setdefault(name.strip(), value.strip())
    return values


def env_of(instructions: list[Instruction], stage: str) -> dict[str, str]:
    """ENV set in one stage (``ENV A=1 B=2`` form)."""
    values: dict[str, str] = {}
    for i in stage_of(instructions, stage):
        if i.keyword == "ENV":
            for word in shlex.split(i.args):
                name, _, value = word.partition("=")
                values[name] = value
    return values


_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}")


def interpolate(value: object, env: dict[str, str] | None = None) -> object:
    """Compose's ``${VAR}``, ``${VAR:-default}`` and ``${VAR-default}`` over a loaded document."""
    env = env or {}
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def one(m: re.Match[str]) -> str:
        name, op, default = m.group(1), m.group(2), m.group(3) or ""
        if name in env and (env[name] or op != ":-"):
            return env[name]
        if op in (":-", "-"):
            return default
        raise KeyError(f"${{{name}}} has no default and is not set")

    return _VAR.sub(one, value.replace("$$", "\0")).replace("\0", "$")


def variables(text: str) -> list[re.Match[str]]:
    return list(_VAR.finditer(text))
