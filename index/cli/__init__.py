"""``python -m index`` and ``tps-index``: the commands (``commands.py``), what they read from their
arguments, search by example, migration and re-encoding between stores."""

from index.cli.commands import build_parser, main

__all__ = ["build_parser", "main"]
