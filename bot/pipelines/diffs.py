"""What a pipeline's steps changed: each of its worktrees against the commit it started from.

The pipeline page shows it (issue 11, "file diffs"; web/pipeline_pages.py `/pipelines/{id}/diff`)
and fetches it again when a step ends or a file changes. Per repository of the pipeline's
worktree session, the diff is the working tree (committed or not) against the worktree's
`base_sha`, plus the files no one added yet (untracked, not ignored), so what an agent wrote
shows before the pull request step commits it.

Read-only and bounded: git runs with optional locks off (a running agent keeps its index), and
each side of a file is sized before git reads it (`ls-tree -l` for the base, `lstat` for the
working tree; a symlink is shown as its target, never followed), so one huge file, or many,
cannot make the page slow or large: past `budget` bytes a file is listed with its size only.
The text is the agents' output, hostile input: the page escapes it (autoescape).
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Sequence
from enum import StrEnum
from pathlib import Path

import msgspec

from bot.gitops.runner import GitError, run_git
from bot.worktrees.files import NOT_COMMITTED
from storage import pipelines, repositories
from storage import worktrees as worktree_store
from storage.database import Database
from storage.worktrees import WorktreeRepo

BUDGET_BYTES = 256 * 1024  # of both sides of the files shown, per repository
MAX_UNTRACKED = 50  # untracked files shown with their text; more are listed by name
GIT_TIMEOUT_S = 30.0  # a page waits for it: far less than the runner's default
MAX_LISTED = 200  # files listed per repository; past it, only how many more there are
DIFF_OPTIONS = ("--no-ext-diff", "--no-textconv", "--no-color", "--no-renames")


class Change(StrEnum):
    ADDED = "added"
    MODIFIED = "modified"
    DELETED = "deleted"
    TYPE_CHANGED = "type changed"
    UNTRACKED = "untracked"


_PATCH_START = re.compile(r"^(?=diff --git )", re.MULTILINE)
_STATUS = {"A": Change.ADDED, "M": Change.MODIFIED, "D": Change.DELETED, "T": Change.TYPE_CHANGED}


class FileDiff(msgspec.Struct):
    path: str
    change: Change
    patch: str | None  # None when it was not read: `too_large_bytes` says why
    anchor: str  # a stable id for the page (its <details id>), from the repository and path
    too_large_bytes: int | None = None


class RepositoryDiff(msgspec.Struct):
    repository: str
    branch: str
    base_sha: str | None
    files: list[FileDiff]
    more: int = 0  # changed files past MAX_LISTED, not listed
    note: str | None = None  # why nothing can be shown (no base, the worktree is gone)


class PipelineDiff(msgspec.Struct):
    pipeline_id: int
    repositories: list[RepositoryDiff]
    note: str | None = None  # why there is no worktree to read


def anchor_of(repository: str, path: str) -> str:
    return "diff-" + hashlib.sha256(f"{repository}\0{path}".encode()).hexdigest()[:16]


async def pipeline_diff(
    db: Database, pipeline_id: int, *, budget: int = BUDGET_BYTES
) -> PipelineDiff:
    """The diff of each worktree of the pipeline's session (an empty list before it has one)."""
    pipeline = await pipelines.get_pipeline(db, pipeline_id)
    if pipeline is None or pipeline.worktree_session_id is None:
        return PipelineDiff(pipeline_id, [], "no step has made a worktree yet")
    session = await worktree_store.get_session(db, pipeline.worktree_session_id)
    if session is None or not session.live:
        return PipelineDiff(pipeline_id, [], "the pipeline's worktrees were removed")
    shown = []
    for row in await worktree_store.repos_of_session(db, session.id):
        repository = await repositories.get(db, row.repository_id)
        name = repository.full_name if repository is not None else f"#{row.repository_id}"
        shown.append(await repository_diff(name, row, budget=budget))
    return PipelineDiff(pipeline_id, shown)


async def repository_diff(name: str, row: WorktreeRepo, *, budget: int) -> RepositoryDiff:
    worktree = Path(row.path)
    if row.base_sha is None:
        return RepositoryDiff(name, row.branch, None, [], note="its base commit is not known")
    if not _is_directory(worktree):
        return RepositoryDiff(name, row.branch, row.base_sha, [], note="the worktree is gone")
    try:
        files, more = await _tracked(name, worktree, row.base_sha, budget)
        spent = sum(len(f.patch or "") for f in files)
        untracked, more_untracked = await _untracked(
            name, worktree, max(0, budget - spent), MAX_LISTED - len(files)
        )
    except GitError as error:
        note = f"git failed: {error.stderr.strip()[-300:]}"
        return RepositoryDiff(name, row.branch, row.base_sha, [], note=note)
    return RepositoryDiff(name, row.branch, row.base_sha, files + untracked, more + more_untracked)


async def _git(worktree: Path, *args: str, check: bool = True) -> str:
    done = await run_git(
        *args, cwd=worktree, optional_locks=False, check=check, timeout_s=GIT_TIMEOUT_S
    )
    return done.stdout


def _fields(text: str) -> list[str]:
    return [part for part in text.split("\0") if part]


async def _tracked(name: str, worktree: Path, base: str, budget: int) -> tuple[list[FileDiff], int]:
    """The tracked files that differ from `base`, the first MAX_LISTED; and how many more."""
    listed = await _git(
        worktree, "diff", "--name-status", "-z", *DIFF_OPTIONS, base, "--", ".", *NOT_COMMITTED
    )
    listing = _fields(listed)
    changed = list(zip(listing[::2], listing[1::2], strict=True))
    more = max(0, len(changed) - MAX_LISTED)
    changed = changed[:MAX_LISTED]
    old_sizes = await _base_sizes(worktree, base, [path for _, path in changed])
    files: list[FileDiff] = []
    chosen: list[str] = []
    for status, path in changed:
        size = old_sizes.get(path, 0) + _size_in(worktree, path)
        change = _STATUS.get(status[:1], Change.MODIFIED)
        if size > budget:
            files.append(FileDiff(path, change, None, anchor_of(name, path), size))
            continue
        budget -= size
        files.append(FileDiff(path, change, "", anchor_of(name, path)))
        chosen.append(path)
    if chosen:
        patches = iter(await _patches(worktree, base, chosen))
        files = [
            f if f.patch is None else msgspec.structs.replace(f, patch=next(patches, ""))
            for f in files
        ]
    return files, more


async def _base_sizes(worktree: Path, base: str, paths: Sequence[str]) -> dict[str, int]:
    """The size of each path's blob in the base commit (absent: it was not there)."""
    if not paths:
        return {}
    listing = await _git(worktree, "--literal-pathspecs", "ls-tree", "-z", "-l", base, "--", *paths)
    sizes = {}
    for entry in _fields(listing):
        meta, _, path = entry.partition("\t")
        size = meta.split()[-1]
        sizes[path] = int(size) if size.isdigit() else 0
    return sizes


def _is_directory(path: Path) -> bool:
    return path.is_dir()


def _size_in(worktree: Path, path: str) -> int:
    try:
        return os.lstat(worktree / path).st_size
    except OSError:
        return 0


async def _patches(worktree: Path, base: str, paths: Sequence[str]) -> list[str]:
    """One patch per path, in git's order (the order `--name-status` listed them in)."""
    text = await _git(worktree, "--literal-pathspecs", "diff", *DIFF_OPTIONS, base, "--", *paths)
    # Split at line starts only after "\n": a file's own lines are prefixed (" ", "+", "-"),
    # and a "\r" inside one must not start a patch of its own.
    return [patch for patch in _PATCH_START.split(text) if patch]


async def _untracked(
    name: str, worktree: Path, budget: int, room: int
) -> tuple[list[FileDiff], int]:
    """Files not added yet (nor ignored), at most `room` of them; and how many more."""
    listing = await _git(
        worktree, "ls-files", "-z", "--others", "--exclude-standard", "--", ".", *NOT_COMMITTED
    )
    paths = _fields(listing)
    files = []
    for count, path in enumerate(paths[: max(0, room)]):
        size = _size_in(worktree, path)
        if count >= MAX_UNTRACKED or size > budget:
            files.append(FileDiff(path, Change.UNTRACKED, None, anchor_of(name, path), size))
            continue
        budget -= size
        patch = await _git(worktree, "diff", "--no-index", *DIFF_OPTIONS, "--", "/dev/null", path,
                           check=False)  # fmt: skip
        files.append(FileDiff(path, Change.UNTRACKED, patch, anchor_of(name, path)))
    return files, max(0, len(paths) - max(0, room))
