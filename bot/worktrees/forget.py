"""Forgetting a repository before it is unregistered: its sessions, spares, mirror and package
caches go."""

from __future__ import annotations

import asyncio
import shutil

from bot.worktrees.layout import WorktreeLayout
from bot.worktrees.mirrors import Mirrors
from bot.worktrees.records import WorktreeBusy
from bot.worktrees.removal import Removal
from bot.worktrees.spares import SparePool
from bot.worktrees.states import RepoStatus
from bot.worktrees.views import SessionViews
from storage.repositories import Repository


class Forgetting:
    """Removing everything the worktree manager keeps of one repository."""

    def __init__(
        self,
        *,
        layout: WorktreeLayout,
        views: SessionViews,
        removal: Removal,
        spares: SparePool,
        mirrors: Mirrors,
    ) -> None:
        self._layout = layout
        self._views = views
        self._removal = removal
        self._spares = spares
        self._mirrors = mirrors

    async def forget_repository(self, repository: Repository, *, force: bool = False) -> None:
        """Before unregistering: clean its sessions (only when `force` if any), its mirror and
        its package caches."""
        live = [
            view
            for view in await self._views.list_sessions()
            if any(
                r.repository_id == repository.id and r.status != RepoStatus.REMOVED
                for r in view.repos
            )
        ]
        if live and not force:
            raise WorktreeBusy(
                f"{repository.full_name} has {len(live)} live worktree session(s);"
                " delete them first or force"
            )
        for view in live:
            reason = f"{repository.full_name} unregistered"
            await self._removal.cleanup_session(view.id, reason, force=True)
        await self._spares.stop_refill(repository)
        await self._spares.discard(repository)
        async with self._mirrors.lock(repository):
            await asyncio.to_thread(shutil.rmtree, self._layout.mirror_path(repository), True)
        await asyncio.to_thread(shutil.rmtree, self._layout.cache_path(repository.id), True)
