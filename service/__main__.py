"""``python -m service [--host H] [--port P]``: serve the search API and page with uvicorn.

Configuration comes from ``TPS_*`` environment variables (see service/settings.py); the flags
override host, port and log level only. ``python -m service keys|audit|retention ...`` manage
keys, export the audit trail and run retention (service/access/keys_cli.py, audit_cli.py,
retention_cli.py).

The server refuses to start on a non-loopback address with no keys, with open reads or with a
weak TPS_API_KEY, and anywhere with a keys file that is malformed or writable by others.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

# Torch and FAISS each bring an OpenMP runtime whose idle threads spin by default; when cores are
# shared (two runtimes, other processes, container CPU quotas) a single query then waits on
# descheduled spinners: measured 270 ms instead of 5 ms per encode on 2 busy cores. Must be set
# before torch loads; an explicit OMP_WAIT_POLICY in the environment wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import uvicorn
from pydantic import ValidationError

from bundle.cli import EXIT_BAD_INPUT
from service.access.audit_cli import main as audit_main
from service.access.keys import KeysFileError
from service.access.keys_cli import main as keys_main
from service.access.retention_cli import main as retention_main
from service.access.security import exposure_problem
from service.app import create_app
from service.settings import Settings

COMMANDS = {"keys": keys_main, "audit": audit_main, "retention": retention_main}

LOG_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


def log_config(level: str) -> dict:
    """One readable line per event for our loggers and uvicorn's (access lines included).
    Libraries stay at WARNING: open_clip reports every loading step at INFO on the root logger."""
    handler = {"class": "logging.StreamHandler", "formatter": "plain", "stream": "ext://sys.stderr"}
    ours = ("service", "index", "uvicorn", "uvicorn.error")
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"plain": {"format": LOG_FORMAT, "datefmt": "%H:%M:%S"}},
        "handlers": {"stderr": handler},
        "root": {"handlers": ["stderr"], "level": max(level.upper(), "WARNING", key=_rank)},
        "loggers": {name: {"level": level.upper()} for name in ours},
    }


def _rank(level: str) -> int:
    return logging.getLevelNamesMapping()[level]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m service",
        description="Serve the text-to-person search API and page. Configuration comes from "
        "TPS_* environment variables (TPS_BUNDLE, and TPS_STORE or TPS_INDEX_DIR, are required).",
        epilog="Other commands: `python -m service keys create|list|revoke` (API keys), "
        "`python -m service audit export` (the audit trail), `python -m service retention` "
        "(remove images past TPS_RETENTION_DAYS); each answers --help.",
    )
    parser.add_argument("--host", help="address to listen on (default: TPS_HOST or 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port (default: TPS_PORT or 8000)")
    parser.add_argument("--log-level", choices=["critical", "error", "warning", "info", "debug"])
    return parser.parse_args(argv)


def _settings_or_exit(args: argparse.Namespace) -> Settings:
    overrides = {k: v for k, v in vars(args).items() if v is not None}
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as err:
        lines = []
        for e in err.errors():
            name = "TPS_" + "__".join(str(p) for p in e["loc"]).upper() if e["loc"] else "settings"
            lines.append(f"  {name}: {e['msg']}")
        sys.exit("python -m service: invalid configuration:\n" + "\n".join(lines))


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in COMMANDS:
        return COMMANDS[argv[0]](argv[1:])
    args = parse_args(argv)
    settings = _settings_or_exit(args)
    try:
        app = create_app(settings)  # reads the keys file
        problem = exposure_problem(settings, app.state.keys)
    except KeysFileError as err:
        problem = str(err)
    if problem is not None:  # before binding: nothing listens on an address it may not open
        print(f"python -m service: error: {problem}", file=sys.stderr)
        return EXIT_BAD_INPUT
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_config=log_config(settings.log_level),
        proxy_headers=False,
        server_header=False,
        access_log=False,  # service/middleware.py logs each request with the caller's key name
    )
    server = uvicorn.Server(config)
    failure: list[str] = []

    def on_fatal(message: str) -> None:
        failure.append(message)
        server.should_exit = True

    app.state.loader.on_fatal = on_fatal
    if settings.open_reads:
        logging.getLogger("service").warning(
            "reads are OPEN: anyone on this machine can search and view every gallery image "
            "without a key (TPS_OPEN_READS=true, bound to %s)",
            settings.host,
        )
    server.run()
    if failure:
        logging.getLogger("service").error("exiting: %s", failure[0])
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
