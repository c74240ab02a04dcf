"""Reading PR comments for biagent: slash commands at the start of a line, and @-mentions.

Only text a person wrote counts: lines inside fenced code blocks and quoted lines (`>`, as
GitHub's "Quote reply" makes them) are skipped, so quoting a command never runs it again. A
command is `/biagent <name> [arguments]` with the slash as the line's first non-blank
character; an unknown name is answered with the help.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

COMMANDS: dict[str, str] = {
    "help": "show this help",
    "address": "work the pending review comments now, without waiting for the quiet window",
    "pause": "stop working review comments on this pull request (pending ones are kept)",
    "resume": "start again after a pause or a cap; caps count afresh from now",
    "retry": "work the last batch of comments again",
    "status": "what biagent is doing on this pull request",
    "ignore": "drop the pending batch of comments",
    "cost": "what biagent has spent on this pull request",
}

_COMMAND_LINE = re.compile(r"^\s{0,3}/biagent(?:\s+(\S+))?(?:\s+(.*))?$", re.IGNORECASE)
_FENCE = re.compile(r"^\s{0,3}(```|~~~)")


@dataclass(frozen=True, slots=True)
class Command:
    name: str  # lower-cased; "help" when none was given
    arguments: str
    known: bool


def _live_lines(body: str) -> list[str]:
    """The lines of `body` outside code fences and quotes."""
    lines, fenced = [], False
    for line in (body or "").splitlines():
        if _FENCE.match(line):
            fenced = not fenced
            continue
        if fenced or line.lstrip().startswith(">"):
            continue
        lines.append(line)
    return lines


def parse_commands(body: str) -> list[Command]:
    found = []
    for line in _live_lines(body):
        match = _COMMAND_LINE.match(line)
        if match is None:
            continue
        name = (match.group(1) or "help").lower()
        found.append(Command(name, (match.group(2) or "").strip(), name in COMMANDS))
    return found


def mentions(body: str, slug: str | None) -> bool:
    """Whether `body` @-mentions the app (`@slug` or `@slug[bot]`) outside code and quotes."""
    if not slug:
        return False
    pattern = re.compile(rf"(?<![\w/@`])@{re.escape(slug)}(?:\[bot\])?(?![\w-])", re.IGNORECASE)
    return any(pattern.search(_strip_inline_code(line)) for line in _live_lines(body))


def _strip_inline_code(line: str) -> str:
    return re.sub(r"`[^`]*`", "", line)


def help_text() -> str:
    rows = "\n".join(f"| `/biagent {name}` | {doc} |" for name, doc in COMMANDS.items())
    return (
        "biagent answers review comments on this pull request. Commands, each at the start of "
        "a line of a comment (people with write access only):\n\n"
        "| command | what it does |\n| --- | --- |\n" + rows
    )
