"""What every command line of the project shares: one-line errors, exit codes, logging.

Exit codes: 0 done; 2 the input was wrong (a bad flag, file, config or data set), said in one
``error: …`` line on stderr; 1 an unexpected failure, with its traceback; 130 interrupted.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Iterable
from typing import NoReturn

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130
PACKAGES = ("bundle", "training", "index", "footage", "service")


class OneLineParser(argparse.ArgumentParser):
    """argparse that reports a bad argument in one ``error:`` line instead of usage plus error."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_BAD_INPUT, f"error: {one_line(message)}\n")


def one_line(message: object) -> str:
    return " ".join(str(message).split())


def describe(err: BaseException) -> str:
    """One line for an error; pydantic's validation errors list each field and its problem."""
    errors = getattr(err, "errors", None)
    if callable(errors):
        try:
            return "; ".join(
                f"{'.'.join(map(str, e['loc'])) or 'config'}: {e['msg']}" for e in errors()
            )
        except (TypeError, KeyError):
            pass
    return one_line(err) or type(err).__name__


def setup_logging(quiet: bool = False, packages: Iterable[str] = PACKAGES) -> None:
    """Our packages at INFO (WARNING when quiet); libraries, open_clip's loading chatter among
    them, at WARNING."""
    logging.basicConfig(
        level=logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
    )
    for name in packages:
        logging.getLogger(name).setLevel(logging.WARNING if quiet else logging.INFO)


def run_command(
    command: Callable[[], int | None], user_errors: tuple[type[BaseException], ...]
) -> int:
    """Run ``command``; errors of ``user_errors`` become one line and exit code 2."""
    try:
        return command() or EXIT_OK
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except user_errors as err:
        print(f"error: {describe(err)}", file=sys.stderr)
        return EXIT_BAD_INPUT
