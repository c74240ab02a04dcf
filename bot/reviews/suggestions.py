"""A reviewer's ```suggestion block, applied as GitHub's "Commit suggestion" does (pure).

`find_suggestion` reads a comment body the way GitHub's Markdown does (CommonMark fenced code
blocks: backticks or tildes, three or more, the info string `suggestion`, up to three spaces of
indent, a block left open runs to the end of the body; a fence inside another code block is
text). `place_of` reads where the comment sits from GitHub's review comment JSON: its lines
`start_line`..`line` on the RIGHT side of the file at `commit_id`, or, once GitHub no longer
places it on the current diff (`line` null), `original_start_line`..`original_line` at
`original_commit_id` (also when the worktree does not hold `commit_id`: GitHub moves it to
the newest head the lines are on, which may have been pushed after the worktree was fetched).
`apply_suggestion` replaces those lines with the block's: a multi-line
block, an empty block (the lines deleted), the file's own line endings kept (CRLF stays CRLF,
whatever the comment body used), and a file whose last line has no newline keeps it without,
also when that last line is deleted.

Carrying onto the current head (`carry_range`): the lines are looked up through the hunks of
`git diff --unified=0 <commit_id> <head> -- <path>`, as GitHub carries a comment along the
diff. A range no hunk touches moves by the lines added or removed above it; a hunk that
changes, removes or inserts a line inside it means the lines changed, and the suggestion is not
applied (the agent gets it with that reason). The caller then checks the carried lines still
read exactly as the comment saw them, so a diff that aligns differently can never misapply.
`reads_as_suggested` tells, through the same hunks (git's, from the file as the suggestion
would make it to the head), whether someone committed the suggestion already.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import msgspec

_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_OPENING = re.compile(r"^(?P<indent> {0,3})(?P<fence>`{3,}|~{3,})(?P<info>.*)$")
_HUNK = re.compile(r"^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@", re.MULTILINE)
_BOM = "\ufeff"
_FILE_LINE = re.compile(r"[^\n]*\n|[^\n]+\Z")


class Unapplicable(Exception):
    """Why a suggestion is not applied as written: the agent is told this reason."""


@dataclass(frozen=True, slots=True)
class Suggestion:
    """The lines the reviewer suggests (no line endings); empty: delete the commented lines."""

    lines: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Place:
    """The lines a comment is on: `first`..`last` (1-based) of `path` at `commit`."""

    path: str
    commit: str
    first: int
    last: int


@dataclass(frozen=True, slots=True)
class Hunk:
    """One hunk header of a `--unified=0` diff (counts default to 1, as git writes them)."""

    old_start: int
    old_count: int
    new_start: int
    new_count: int


class Author(msgspec.Struct, frozen=True):
    """A comment's author as GitHub's JSON gives it: the login and the account id."""

    login: str
    id: int


class CommentPosition(msgspec.Struct, frozen=True):
    """The fields of GitHub's review comment JSON that say where it is, and who wrote it."""

    user: Author | None = None
    path: str | None = None
    commit_id: str | None = None
    original_commit_id: str | None = None
    line: int | None = None
    start_line: int | None = None
    original_line: int | None = None
    original_start_line: int | None = None
    side: str | None = None
    start_side: str | None = None
    subject_type: str | None = None


# -- the body ----------------------------------------------------------------------------------


def find_suggestion(body: str) -> Suggestion | Unapplicable | None:
    """The comment's suggestion; None when it has none; `Unapplicable` when it has several
    (GitHub commits one block per comment; which one was meant is for the agent to judge)."""
    found = _suggestion_blocks(_LINE_BREAK.split(body or ""), trailing_break=_ends_a_line(body))
    if not found:
        return None
    if len(found) > 1:
        return Unapplicable(f"the comment holds {len(found)} suggestion blocks, not one")
    return Suggestion(tuple(found[0]))


def _ends_a_line(body: str | None) -> bool:
    return bool(body) and (body or "")[-1] in "\r\n"


def _suggestion_blocks(lines: list[str], *, trailing_break: bool) -> list[list[str]]:
    if trailing_break:
        lines = lines[:-1]  # the body's last line break ends its last line, it adds none
    blocks: list[list[str]] = []
    index = 0
    while index < len(lines):
        opening = _OPENING.match(lines[index])
        index += 1
        if opening is None:
            continue
        fence, info = opening["fence"], opening["info"].strip()
        if fence[0] == "`" and "`" in info:
            continue  # not a fence: CommonMark forbids backticks in a backtick fence's info
        content, index = _fenced_content(lines, index, fence, len(opening["indent"]))
        if info.split(maxsplit=1)[:1] == ["suggestion"]:
            blocks.append(content)
    return blocks


def _fenced_content(lines: list[str], index: int, fence: str, indent: int) -> tuple[list[str], int]:
    """The lines of a fenced block opened just before `index`, and the index after it."""
    closing = re.compile(rf"^ {{0,3}}{re.escape(fence[0])}{{{len(fence)},}}[ \t]*$")
    content = []
    while index < len(lines):
        line = lines[index]
        index += 1
        if closing.match(line):
            break
        content.append(_unindent(line, indent))
    return content, index


def _unindent(line: str, indent: int) -> str:
    stripped = len(line) - len(line.lstrip(" "))
    return line[min(stripped, indent) :]


# -- where the comment is ------------------------------------------------------------------------


def place_of(comment: CommentPosition, *, original: bool = False) -> Place | Unapplicable:
    """The lines the suggestion replaces, from GitHub's comment JSON; with `original`, the lines
    at the commit it was written on even when GitHub places it on a later one (which the
    worktree may not hold: GitHub moves `commit_id` to the newest head the lines are on)."""
    if comment.subject_type == "file" or not comment.path:
        return Unapplicable("it is a comment on the whole file, not on lines")
    if not original and comment.line is not None and comment.commit_id:
        commit, last, first = comment.commit_id, comment.line, comment.start_line
    elif comment.original_line is not None and (comment.original_commit_id or comment.commit_id):
        commit = comment.original_commit_id or comment.commit_id or ""
        last, first = comment.original_line, comment.original_start_line
    else:
        return Unapplicable("GitHub gives no line for it")
    if (comment.side or "RIGHT") != "RIGHT" or (comment.start_side or "RIGHT") != "RIGHT":
        return Unapplicable("it is on removed lines (the old side of the diff)")
    first = last if first is None else first
    if not 1 <= first <= last:
        return Unapplicable(f"its lines {first}-{last} are not a range")
    return Place(comment.path, commit, first, last)


# -- the file ------------------------------------------------------------------------------------


def split_lines(text: str) -> list[str]:
    """The file's lines as git counts them (a line ends at `\\n`), each with its ending."""
    return _FILE_LINE.findall(text)


def _ending(line: str) -> str:
    if line.endswith("\r\n"):
        return "\r\n"
    return "\n" if line.endswith("\n") else ""


def _body(line: str) -> str:
    return line[: len(line) - len(_ending(line))]


def lines_of(text: str, first: int, last: int) -> tuple[str, ...]:
    """Lines `first`..`last` of the file, without their endings (a BOM is not text)."""
    lines = split_lines(text.removeprefix(_BOM))
    if not 1 <= first <= last <= len(lines):
        raise Unapplicable(f"the file has {len(lines)} lines, the comment is on {first}-{last}")
    return tuple(_body(line) for line in lines[first - 1 : last])


def _file_ending(lines: Sequence[str]) -> str:
    endings = [_ending(line) for line in lines if _ending(line)]
    if not endings:
        return "\n"
    return "\r\n" if endings.count("\r\n") > len(endings) / 2 else "\n"


def apply_suggestion(text: str, first: int, last: int, suggestion: Suggestion) -> str:
    """The file with lines `first`..`last` replaced by the suggestion's lines.

    New lines take the ending of the first replaced line that has one (else the file's usual
    one); the last new line takes the last replaced line's ending, so a file without a final
    newline keeps none. Deleting the last lines of such a file leaves it still without one."""
    bom = _BOM if text.startswith(_BOM) else ""
    lines = split_lines(text[len(bom) :])
    lines_of(text, first, last)  # the range is inside the file
    replaced = lines[first - 1 : last]
    eol = next((_ending(line) for line in replaced if _ending(line)), _file_ending(lines))
    new = [line + eol for line in suggestion.lines]
    if new:
        new[-1] = suggestion.lines[-1] + _ending(replaced[-1])
    after = lines[last:]
    before = lines[: first - 1]
    if not new and not after and before and _body(before[-1]) and not _ending(replaced[-1]):
        before[-1] = _body(before[-1])  # the file still ends without a newline
    return bom + "".join(before + new + after)


# -- carrying the lines onto the head ------------------------------------------------------------


def parse_hunks(diff: str) -> list[Hunk]:
    """The hunks of a `git diff --unified=0` of one file."""
    return [
        Hunk(int(a), int(b) if b else 1, int(c), int(d) if d else 1)
        for a, b, c, d in _HUNK.findall(diff)
    ]


def carry_range(hunks: Iterable[Hunk], first: int, last: int) -> tuple[int, int] | None:
    """Where lines `first`..`last` of the old file are in the new one; None when a hunk
    changes, removes or inserts lines inside them."""
    shift = 0
    for hunk in sorted(hunks, key=lambda h: (h.old_start, h.old_count)):
        if hunk.old_count == 0:  # lines inserted after old line `old_start`
            if hunk.old_start < first:
                shift += hunk.new_count
            elif hunk.old_start < last:
                return None
            continue
        old_end = hunk.old_start + hunk.old_count - 1
        if old_end < first:
            shift += hunk.new_count - hunk.old_count
        elif hunk.old_start <= last:
            return None
    return first + shift, last + shift


def reads_as_suggested(head: str, hunks: Iterable[Hunk], first: int, s: Suggestion) -> bool:
    """Whether the head holds the suggestion's new lines where they belong: `hunks` are those
    of `git diff --unified=0` from the file as the suggestion would make it (its lines at
    `first`) to the head. A deletion cannot be told apart from lines never there: False."""
    if not s.lines:
        return False
    carried = carry_range(hunks, first, first + len(s.lines) - 1)
    return carried is not None and lines_of(head, *carried) == s.lines


def overlapping(ranges: Sequence[tuple[int, int]], candidate: tuple[int, int]) -> bool:
    """Whether `candidate` shares a line with any of `ranges` (inclusive line ranges)."""
    return any(not (candidate[1] < start or end < candidate[0]) for start, end in ranges)
