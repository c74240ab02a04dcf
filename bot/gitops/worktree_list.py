"""`git worktree list --porcelain`, parsed: which worktrees a mirror has, on which branch, locked
or prunable (the worktree manager and its start-up reconciliation read it)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bot.gitops.runner import run_git


@dataclass(frozen=True, slots=True)
class ListedWorktree:
    """One entry of `git worktree list --porcelain`."""

    path: Path
    head: str | None
    branch: str | None  # refs/heads/...
    bare: bool
    locked: bool
    lock_reason: str | None
    prunable: bool


def parse_worktree_list(porcelain: str) -> list[ListedWorktree]:
    entries: list[ListedWorktree] = []
    for block in porcelain.strip().split("\n\n"):
        if not block.strip():
            continue
        fields: dict[str, str | None] = {}
        for line in block.splitlines():
            name, _, value = line.partition(" ")
            fields[name] = value if value else None
        entries.append(
            ListedWorktree(
                path=Path(fields.get("worktree") or ""),
                head=fields.get("HEAD"),
                branch=fields.get("branch"),
                bare="bare" in fields,
                locked="locked" in fields,
                lock_reason=fields.get("locked"),
                prunable="prunable" in fields,
            )
        )
    return entries


async def list_worktrees(mirror: Path) -> list[ListedWorktree]:
    output = await run_git("worktree", "list", "--porcelain", cwd=mirror, optional_locks=False)
    return [entry for entry in parse_worktree_list(output.stdout) if not entry.bare]
