"""Files in a worktree: the gitignored ones copied in from the repository's store before setup,
and the tracked files that changed (what setup must not touch, what a PR checkout must not
have before it follows a new head)."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

from bot.gitops.runner import run_git
from bot.worktrees.records import WorktreeSetupError


async def copy_stored_files(
    full_name: str, store: Path, worktree: Path, names: Sequence[str]
) -> list[str]:
    """Copy listed gitignored files from the repository's store; refuse tracked paths.
    Returns a note per file."""
    notes = []
    for name in names:
        relative = PurePosixPath(name)
        if relative.is_absolute() or ".." in relative.parts or not relative.parts:
            raise WorktreeSetupError(f"{full_name}: copy_files entry {name!r}")
        ignored = await run_git("check-ignore", "--quiet", str(relative), cwd=worktree, check=False)
        if ignored.returncode != 0:
            raise WorktreeSetupError(
                f"{full_name}: copy_files lists {name}, which is not gitignored;"
                " only ignored files are copied in"
            )
        source = store / relative
        if not source.is_file():
            notes.append(f"{name}: not in the store ({source}); skipped")
            continue
        target = worktree / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        await asyncio.to_thread(shutil.copy2, source, target)
        notes.append(f"{name}: copied from the store")
    return notes


# What tools leave in a worktree that is also their HOME; never part of a commit biagent makes.
NOT_COMMITTED = (
    ":(exclude,glob).cache/**",
    ":(exclude,glob).local/**",
    ":(exclude,glob).config/**",
    ":(exclude,glob).npm/**",
    ":(exclude,glob)**/__pycache__/**",
    ":(exclude,glob)**/.pytest_cache/**",
    ":(exclude,glob).*_history",
)


async def tracked_changes(worktree: Path) -> list[str]:
    """The tracked paths that differ from HEAD (staged or not)."""
    status = await run_git(
        "status", "--porcelain", "--untracked-files=no", cwd=worktree, optional_locks=False
    )
    return [line[3:] for line in status.stdout.splitlines() if line.strip()]
