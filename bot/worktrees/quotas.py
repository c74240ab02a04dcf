"""Disk use per repository: each worktree's measured size, the quota, and making room for a
new worktree by removing the repository's idlest sessions.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from bot.clock import Clock
from bot.worktrees import disk
from bot.worktrees.records import QuotaExceeded, stamp
from bot.worktrees.removal import Removal
from bot.worktrees.views import SessionViews
from storage import repositories as repository_store
from storage import worktrees as worktree_store
from storage.database import Database
from storage.repositories import Repository

log = logging.getLogger(__name__)


class Quotas:
    """Measuring worktrees and keeping each repository within its quota."""

    def __init__(
        self,
        db: Database,
        clock: Clock,
        views: SessionViews,
        removal: Removal,
        *,
        default_quota_bytes: int,
    ) -> None:
        self._db = db
        self._clock = clock
        self._views = views
        self._removal = removal
        self._default_quota_bytes = default_quota_bytes

    def quota_of(self, repository: Repository) -> int:
        if repository.quota_bytes is not None:
            return repository.quota_bytes
        return self._default_quota_bytes

    async def usage(self, repository: Repository) -> int:
        """Bytes the repository's live worktrees use (last measurement of each)."""
        rows = await worktree_store.live_repos(
            self._db, repository_id=repository.id, instance_id=self._views.instance_id
        )
        return sum(row.size_bytes or 0 for row in rows)

    async def make_room(self, repository: Repository) -> None:
        """Before a new worktree: free idle sessions of the repository while over its quota."""
        repository = await repository_store.get(self._db, repository.id) or repository
        quota = self.quota_of(repository)
        if await self.usage(repository) < quota:
            return
        candidates = [
            view
            for view in await self._views.list_sessions()
            if view.session.held_by is None
            and any(row.repository_id == repository.id for row in view.repos)
        ]
        candidates.sort(key=lambda view: view.session.last_used_at)
        for view in candidates:
            reason = f"{repository.full_name} over its disk quota"
            await self._removal.cleanup_session(view.id, reason)
            if await self.usage(repository) < quota:
                return
        raise QuotaExceeded(
            f"{repository.full_name}: worktrees use {disk.human_size(await self.usage(repository))}"
            f" of a {disk.human_size(quota)} quota and every one is in use"
        )

    async def measure(self) -> int:
        """Measure every live worktree's size now; returns the total."""
        total = 0
        for row in await worktree_store.live_repos(self._db, instance_id=self._views.instance_id):
            size = await asyncio.to_thread(disk.allocated_bytes, Path(row.path))
            total += size
            await worktree_store.update_repo(
                self._db,
                row.id,
                now=self._clock.now(),
                size_bytes=size,
                size_measured_at=stamp(self._clock),
            )
        return total
