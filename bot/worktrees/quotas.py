"""Disk use per repository: each worktree's measured size, the quota, and making room for a
new worktree by removing the repository's idlest sessions.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from bot.worktrees import disk
from bot.worktrees.core import stamp
from bot.worktrees.records import QuotaExceeded
from bot.worktrees.removal import Removal
from storage import repositories as repository_store
from storage import worktrees as worktree_store
from storage.repositories import Repository

log = logging.getLogger(__name__)


class Quotas(Removal):
    """Measuring worktrees and keeping each repository within its quota."""

    def quota_of(self, repository: Repository) -> int:
        return (
            repository.quota_bytes
            if repository.quota_bytes is not None
            else self.default_quota_bytes
        )

    async def usage(self, repository: Repository) -> int:
        """Bytes the repository's live worktrees use (last measurement of each)."""
        rows = await worktree_store.live_repos(self.db, repository_id=repository.id)
        return sum(row.size_bytes or 0 for row in rows)

    async def _make_room(self, repository: Repository) -> None:
        """Before a new worktree: free idle sessions of the repository while over its quota."""
        repository = await repository_store.get(self.db, repository.id) or repository
        quota = self.quota_of(repository)
        if await self.usage(repository) < quota:
            return
        candidates = []
        for view in await self.list_sessions():
            if view.session.held_by is None and any(
                row.repository_id == repository.id for row in view.repos
            ):
                candidates.append(view)
        candidates.sort(key=lambda view: view.session.last_used_at)
        for view in candidates:
            await self.cleanup_session(view.id, f"{repository.full_name} over its disk quota")
            if await self.usage(repository) < quota:
                return
        raise QuotaExceeded(
            f"{repository.full_name}: worktrees use {disk.human_size(await self.usage(repository))}"
            f" of a {disk.human_size(quota)} quota and every one is in use"
        )

    async def measure(self) -> int:
        """Measure every live worktree's size now; returns the total."""
        total = 0
        for row in await worktree_store.live_repos(self.db):
            path = Path(row.path)
            size = await asyncio.to_thread(disk.allocated_bytes, path)
            total += size
            await worktree_store.update_repo(
                self.db,
                row.id,
                now=self.clock.now(),
                size_bytes=size,
                size_measured_at=stamp(self.clock),
            )
        return total
