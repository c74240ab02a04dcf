"""Reading and writing the files of a worktree safely: regular files only, capped, never a FIFO.

The file tools, grep and the bash change detection all read worktree files the model may have
made anything of (a FIFO that would block, a device, a huge file, a symlink): every read and write
goes through here, opened without following a link, checked to be a regular file, and capped.
"""

from __future__ import annotations

import difflib
import os
import stat
from collections.abc import Iterable
from pathlib import Path

MAX_DIFF_BYTES = 100_000
MAX_FILE_BYTES = 5 * 1024 * 1024  # files larger than this are not read, grepped or diffed


def unified_diff(path: str, before: str, after: str) -> str:
    lines = difflib.unified_diff(
        before.splitlines(keepends=True),
        after.splitlines(keepends=True),
        fromfile=f"a/{path}" if before else "/dev/null",
        tofile=f"b/{path}",
    )
    diff = "".join(lines)
    if len(diff) > MAX_DIFF_BYTES:
        diff = diff[:MAX_DIFF_BYTES] + "\n[diff cut]\n"
    return diff


class NotARegularFile(OSError):
    """A FIFO, a device, a socket or a directory where a file was wanted, or a file too large."""


def open_regular(path: Path, flags: int) -> int:
    """A descriptor of `path`, refused unless it is a regular file (never blocks on a FIFO)."""
    descriptor = os.open(path, flags | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        if not stat.S_ISREG(os.fstat(descriptor).st_mode):
            raise NotARegularFile(f"{path.name} is not a regular file")
    except BaseException:
        os.close(descriptor)
        raise
    return descriptor


def read_capped(path: Path, cap: int = MAX_FILE_BYTES) -> bytes:
    descriptor = open_regular(path, os.O_RDONLY)
    with os.fdopen(descriptor, "rb") as opened:
        if os.fstat(opened.fileno()).st_size > cap:
            raise NotARegularFile(f"{path.name} is larger than {cap} bytes")
        return opened.read(cap + 1)[:cap]


def read_text(path: Path) -> str:
    return read_capped(path).decode("utf-8", errors="replace")


def write_text(path: Path, text: str) -> None:
    descriptor = open_regular(path, os.O_WRONLY | os.O_CREAT)
    with os.fdopen(descriptor, "wb") as written:
        written.truncate(0)
        written.write(text.encode("utf-8"))


def kind_problem(target: Path, shown: str) -> str | None:
    """Why `target` cannot be read as a file, or None when it is a regular one."""
    try:
        mode = target.stat().st_mode
    except FileNotFoundError:
        return f"{shown}: no such file"
    if stat.S_ISDIR(mode):
        return f"{shown} is a directory"
    if not stat.S_ISREG(mode):
        return f"{shown} is not a regular file (a FIFO, socket or device); it is not read"
    return None


def read_regular(target: Path, shown: str) -> str:
    """The text of the regular file `target`, or an OSError whose text tells the model why not
    (`shown` is the name it gave)."""
    problem = kind_problem(target, shown)
    if problem is not None:
        raise NotARegularFile(problem)
    try:
        return read_text(target)
    except OSError as error:
        raise OSError(f"{shown}: {error}") from None


def walk_files(root: Path) -> Iterable[Path]:
    for directory, subdirectories, files in os.walk(root, followlinks=False):
        subdirectories[:] = sorted(name for name in subdirectories if name != ".git")
        for file_name in sorted(files):
            yield Path(directory) / file_name
