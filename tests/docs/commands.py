"""The shell commands the README and the docs pages show: every line of their ```bash blocks, and
the `python -m ...` and `make ...` commands quoted in their text."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]

_BLOCK = re.compile(r"^```bash\n(.*?)^```", re.M | re.S)
_ANY_BLOCK = re.compile(r"^```.*?^```", re.M | re.S)
_INLINE = re.compile(r"(?<!`)`([^`]+)`(?!`)")  # may wrap onto the next line, as Markdown allows
_QUOTED_COMMAND = re.compile(r"^((\.venv/bin/)?python -m \S|make [a-z])")
_SEPARATORS = {"&&", "||", ";", "|", "&"}
_ASSIGNMENT = re.compile(r"^[A-Z_][A-Z0-9_]*=")


@dataclass(frozen=True)
class Command:
    page: str  # where it is shown, relative to the repository
    words: tuple[str, ...]  # after the shell's quoting, without leading VAR=value assignments

    def __str__(self) -> str:
        return f"{self.page}: {shlex.join(self.words)}"


def shown_commands(pages: list[Path] = PAGES) -> list[Command]:
    commands = []
    for page in pages:
        name = str(page.relative_to(ROOT))
        text = page.read_text()
        for block in _BLOCK.findall(text):
            for line in _logical_lines(block):
                commands += [Command(name, words) for words in _simple_commands(line)]
        for span in _INLINE.findall(_ANY_BLOCK.sub("", text)):
            line = " ".join(span.split())
            if _QUOTED_COMMAND.match(line) and "*" not in line:  # `make docker-*` names a family
                commands += [Command(name, words) for words in _simple_commands(line)]
    return commands


def _logical_lines(block: str) -> list[str]:
    """Lines with continuations joined, and a quoted string that spans lines kept whole."""
    lines, pending = [], ""
    for line in block.replace("\\\n", " ").splitlines():
        pending = f"{pending}\n{line}" if pending else line
        try:
            shlex.split(pending, comments=True)
        except ValueError:  # an open quote: the string goes on on the next line
            continue
        lines.append(pending)
        pending = ""
    assert not pending, f"unclosed quote in a shell block: {pending!r}"
    return lines


def _simple_commands(line: str) -> list[tuple[str, ...]]:
    commands, words = [], []
    for word in [*shlex.split(line, comments=True), ";"]:
        if word in _SEPARATORS:
            while words and _ASSIGNMENT.match(words[0]):
                words.pop(0)
            if words:
                commands.append(tuple(words))
            words = []
        else:
            words.append(word)
    return commands
