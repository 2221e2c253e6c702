"""Every command the README and the docs pages show works as written, as far as it can be checked
without running it: make targets exist; modules exist and their command lines take the
subcommands and flags shown (asked with --help, in this process); compose files, services and
repository files exist; curl calls name routes the service has."""

from __future__ import annotations

import functools
import io
import os
import re
import runpy
import sys
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest
import yaml
from starlette.routing import Match

from service.app import create_app
from service.settings import Settings
from tests.docs.commands import ROOT, Command, shown_commands

COMMANDS = shown_commands()
_FLAG = re.compile(r"^\[?(--?[A-Za-z][\w-]*)")
_REPO_FILE = re.compile(r"^(configs|docker|bench|locks)/\S+\.\w+$")
# docker/entrypoint.sh: the image's jobs, as the command line each one runs.
_JOBS = {
    "serve": ("service",),
    "train": ("training", "train"),
    "index": ("index",),
    **{job: ("training", job) for job in ("evaluate", "export", "check-weights")},
    **{job: ("service", job) for job in ("keys", "audit", "retention")},
}
# docker/compose.yaml's services and the job each one runs.
_COMPOSE_JOBS = {"api": "serve", "train": "train", "index": "index"}


def test_the_pages_show_commands_of_every_kind() -> None:
    programs = {c.words[0] for c in COMMANDS}
    assert {"make", "python", ".venv/bin/python", "curl", "docker", "bash"} <= programs
    assert len(COMMANDS) > 50


@pytest.mark.parametrize("command", COMMANDS, ids=str)
def test_command_works_as_written(command: Command) -> None:
    words = list(command.words)
    program = words[0]
    if program in ("python", ".venv/bin/python", "torchrun"):
        assert "-m" in words, f"{command}: only `python -m MODULE` commands are shown"
        start = words.index("-m")
        check_cli(command, words[start + 1], words[start + 2 :])
    elif program == "make":
        check_make(command, words[1:])
    elif program == "docker":
        check_docker(command, words[1:])
    elif program == "curl":
        check_curl(command, words[1:])
    elif program == "bash":
        script = ROOT / words[1]
        assert script.is_file(), f"{command}: {words[1]} does not exist"
        for flag in flags(words[2:]):
            assert flag in script.read_text(), f"{command}: {words[1]} takes no {flag}"
    elif program.startswith(".venv/bin/"):
        tool = Path(sys.executable).parent / program.removeprefix(".venv/bin/")
        assert tool.is_file(), f"{command}: the environment has no {tool.name}"
    for word in words:
        if _REPO_FILE.match(word):
            assert (ROOT / word).is_file(), f"{command}: {word} does not exist"


def check_cli(command: Command, module: str, args: list[str]) -> None:
    """The module's --help, asked after the subcommand words shown, lists every flag shown."""
    prefix = []
    for word in args:
        if word.startswith(("-", "[")):
            break
        if word != "...":
            prefix.append(word)
    # `index build|migrate ... --kind K`: each of the alternatives takes the flags.
    for alternative in prefix[0].split("|") if prefix else [None]:
        words = tuple(prefix if alternative is None else [alternative, *prefix[1:]])
        code, text = help_text(module, words)
        shown = f"python -m {module} {' '.join(words)}"
        assert code == 0, f"{command}: `{shown} --help` failed:\n{text}"
        for flag in flags(args):
            assert re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", text), (
                f"{command}: `{shown}` takes no {flag}"
            )


@functools.cache
def help_text(module: str, prefix: tuple[str, ...]) -> tuple[int | str | None, str]:
    """What ``python -m MODULE PREFIX... --help`` prints, and its exit code (run here: the
    imports are shared with the other tests of this process, and nothing but parsing runs)."""
    out, saved_argv, saved_env = io.StringIO(), sys.argv, dict(os.environ)
    umask = os.umask(0o077)
    os.umask(umask)
    sys.argv = [module, *prefix, "--help"]
    code: int | str | None = 0
    try:
        with redirect_stdout(out), redirect_stderr(out):
            runpy.run_module(module, run_name="__main__")
    except SystemExit as exit_:
        code = exit_.code
    finally:
        sys.argv = saved_argv
        os.environ.clear()
        os.environ.update(saved_env)
        os.umask(umask)
    return code, out.getvalue()


def flags(words: list[str]) -> list[str]:
    return [m.group(1) for w in words if (m := _FLAG.match(w))]


def makefile_targets() -> set[str]:
    text = (ROOT / "Makefile").read_text()
    rules = re.findall(r"^([A-Za-z][\w. -]*?)\s*:(?!=)", text, re.M)
    return {target for rule in rules for target in rule.split()}


def check_make(command: Command, args: list[str]) -> None:
    targets = [w for w in args if "=" not in w and not w.startswith("-")]
    assert targets, f"{command}: no target"
    assert set(targets) <= makefile_targets(), f"{command}: no such make target"
    settings = dict(w.split("=", 1) for w in args if "=" in w)
    if "ARGS" in settings and targets[0] in ("docker-train", "docker-index"):
        job = _JOBS[targets[0].removeprefix("docker-")]
        check_cli(command, job[0], [*job[1:], *settings["ARGS"].split()])


_COMPOSE_VALUE_OPTIONS = {"-p", "--project-name", "--profile", "--env-file"}


def check_docker(command: Command, args: list[str]) -> None:
    if args[0] == "compose":
        files = [args[i + 1] for i, w in enumerate(args) if w == "-f"]
        for name in files:
            assert (ROOT / name).is_file(), f"{command}: {name} does not exist"
        services: set[str] = set()
        for name in files:
            services |= set(yaml.safe_load((ROOT / name).read_text())["services"])
        rest = args[args.index(files[-1]) + 1 :]
        while rest[0] in _COMPOSE_VALUE_OPTIONS:  # compose's own options before the command
            rest = rest[2:]
        if rest[0] == "run":
            service = next(w for w in rest[1:] if not w.startswith("-"))
            assert service in services, f"{command}: no service {service}"
            job_args = [w for w in rest[rest.index(service) + 1 :] if w != "[ARGS...]"]
            if job_args and service in _COMPOSE_JOBS:
                first = job_args[0]
                job = _JOBS[first] if first in _JOBS and service == "api" else None
                job = job or _JOBS[_COMPOSE_JOBS[service]]
                if job[-1] == first:
                    job_args = job_args[1:]
                check_cli(command, job[0], [*job[1:], *job_args])
        else:
            named = [w for w in rest[1:] if not w.startswith("-")]
            assert set(named) <= services, f"{command}: no service {named}"
    elif args[0] == "run":
        image = next(i for i, w in enumerate(args) if w.startswith("person-search"))
        job = _JOBS[args[image + 1]]
        check_cli(command, job[0], [*job[1:], *args[image + 2 :]])
    else:
        pytest.fail(f"{command}: not a docker command these tests know")


@functools.cache
def app_routes() -> list:
    return list(create_app(Settings(bundle="b", index_dir="i")).routes)


def check_curl(command: Command, args: list[str]) -> None:
    """The service's own router takes the URL's path with the method curl sends."""
    urls = [w for w in args if re.match(r"^(https?://)?(localhost|127\.0\.0\.1):\d+/", w)]
    assert len(urls) == 1, f"{command}: one URL of this server expected"
    path = re.sub(r"^(https?://)?[^/]+", "", urls[0]).split("?")[0]
    sends_body = any(w in ("-d", "--data", "-F", "--form") for w in args)
    method = args[args.index("-X") + 1] if "-X" in args else "POST" if sends_body else "GET"
    scope = {"type": "http", "path": path, "method": method, "root_path": "", "headers": []}
    matches = [route.matches(scope)[0] for route in app_routes()]
    assert Match.FULL in matches, f"{command}: the service has no route {method} {path}"
