"""What stays read-only for a command run in a git repository (part of the git jail,
bot/isolation/git_jail.py): the `.git` link, the shared git dir of a linked worktree and the
private git dir's links; and the object directory of its own mounted where the shared one was.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

# Where the jail sees the shared objects (read-only) behind its own object directory.
SHARED_OBJECTS_IN_JAIL = Path("/tmp/.biagent-shared-objects")
JAIL_OBJECTS = "biagent-objects"  # the command's own object directory, in the private git dir


@dataclass(frozen=True, slots=True)
class LinkedGitDirs:
    """A linked worktree's own git dir (index, HEAD) and the shared git dir it belongs to."""

    private: Path
    common: Path


@dataclass(frozen=True, slots=True)
class GitGuard:
    """Binds that let a command in a git worktree commit without steering git afterwards."""

    readonly: tuple[Path, ...] = ()
    reopened: tuple[Path, ...] = ()  # writable again beneath a read-only one
    moved: tuple[tuple[Path, Path, bool], ...] = ()  # (host path, path in the jail, writable)
    jailed: LinkedGitDirs | None = None  # when the linked worktree's own git dir is writable


_PRIVATE_LINKS = ("commondir", "gitdir", "config.worktree", "locked")
_PLAIN_PROTECTED = ("config", "hooks", "info", "commondir", "config.worktree")


def _find_dot_git(directory: Path) -> Path | None:
    for candidate in (directory, *directory.parents):
        if (candidate / ".git").exists():
            return candidate / ".git"
    return None


def guard_git_dirs(cwd: Path, writable_paths: Sequence[Path]) -> GitGuard:
    """What must stay read-only in the git repository `cwd` belongs to, given what is writable.

    A linked worktree (`.git` is a file): the `.git` file, the whole shared git dir (refs,
    objects, config, hooks, other worktrees' git dirs: whatever the caller made writable) and
    the private git dir's links (`config.worktree` is created empty so that the bind has a
    target); when the private git dir is writable it is opened again, and the command's own
    object directory is mounted over the shared `objects/` (`enter_git_jail` fills it in).
    A plain repository (`.git` is a directory): its `config`, `hooks/` and `info/`; the
    directory is bound onto itself so it cannot be swapped.
    Bind targets are mount points inside the jail: they cannot be removed or renamed either.
    """
    writable = [path.resolve() for path in (cwd, *writable_paths)]

    def is_writable(path: Path) -> bool:
        return any(path.is_relative_to(root) for root in writable)

    dot_git = _find_dot_git(cwd)
    if dot_git is None or not is_writable(dot_git.parent):
        return GitGuard()
    try:
        if dot_git.is_dir():
            return GitGuard(
                tuple(dot_git / name for name in _PLAIN_PROTECTED if (dot_git / name).exists()),
                (dot_git,),
            )
        text = dot_git.read_text(encoding="utf-8").strip()
        private = (dot_git.parent / text.removeprefix("gitdir:").strip()).resolve()
        if not private.is_dir():
            return GitGuard((dot_git,))
        common_link = private / "commondir"
        common = (
            (private / common_link.read_text(encoding="utf-8").strip()).resolve()
            if common_link.is_file()
            else private
        )
        readonly = [dot_git]
        if common != private:
            readonly.insert(0, common)
        if not is_writable(private) or common == private:
            readonly += [private / name for name in _PRIVATE_LINKS if (private / name).exists()]
            return GitGuard(tuple(readonly))
        (private / "config.worktree").touch(exist_ok=True)
        readonly += [private / name for name in _PRIVATE_LINKS if (private / name).exists()]
        own_objects = private / JAIL_OBJECTS
        moved = (
            (common / "objects", SHARED_OBJECTS_IN_JAIL, False),
            (own_objects, common / "objects", True),
        )
        return GitGuard(tuple(readonly), (private,), moved, LinkedGitDirs(private, common))
    except (OSError, UnicodeDecodeError) as error:
        # A repository too broken to read: let git fail inside; it cannot be guarded.
        log.warning("%s: git dirs not guarded (%s)", dot_git, error)
        return GitGuard()


# Caps on what biagent reads back from the jail: a loose object bigger than this (inflated or
# compressed) is dropped, and so is a pack file bigger than `MAX_JAIL_PACK_BYTES`.


def linked_git_dirs(worktree: Path) -> LinkedGitDirs | None:
    """A linked worktree's private and shared git dirs, or None."""
    try:
        dot_git = worktree / ".git"
        if dot_git.is_symlink() or not dot_git.is_file():
            return None
        text = dot_git.read_text(encoding="utf-8").strip().removeprefix("gitdir:").strip()
        private = (worktree / text).resolve()
        common_link = private / "commondir"
        if not common_link.is_file():
            return None
        common = (private / common_link.read_text(encoding="utf-8").strip()).resolve()
        return LinkedGitDirs(private, common)
    except (OSError, UnicodeDecodeError):
        return None
