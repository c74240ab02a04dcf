"""Reading sessions: a session with its worktrees (`SessionView`), one, all live ones, and the
shape the API shows.

Worktrees are on the disk of the instance that made them (docs/deploy.md, Local disk): what
works on the disk (reuse, setup, sweeps, quotas, reconciliation) reads this instance's sessions
alone, and another instance's session is absent here; the API and the pages, which only show,
read `anywhere`."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from bot.worktrees.records import SessionView, WorktreeError
from storage import repositories as repository_store
from storage import worktrees as worktree_store
from storage.database import Database
from storage.repositories import Repository
from storage.timestamps import from_text
from storage.worktrees import WorktreeRepo


class SessionViews:
    """Sessions as callers see them, read from the tables."""

    def __init__(self, db: Database, *, port_block: int, instance_id: str) -> None:
        self._db = db
        self._port_block = port_block
        self.instance_id = instance_id

    async def get(self, session_id: str, *, anywhere: bool = False) -> SessionView | None:
        """The session; None when there is none, or when it is on another instance's disk
        (unless `anywhere`)."""
        session = await worktree_store.get_session(self._db, session_id)
        if session is None or not (anywhere or session.instance_id == self.instance_id):
            return None
        return SessionView(
            session, tuple(await worktree_store.repos_of_session(self._db, session_id))
        )

    async def require(self, session_id: str) -> SessionView:
        """The session, or WorktreeError when there is none (removed under the caller)."""
        view = await self.get(session_id)
        if view is None:
            raise WorktreeError(f"no session {session_id}")
        return view

    async def list_sessions(
        self, *, live_only: bool = True, anywhere: bool = False
    ) -> list[SessionView]:
        """This instance's sessions (every instance's with `anywhere`)."""
        views = []
        instance_id = None if anywhere else self.instance_id
        for session in await worktree_store.list_sessions(
            self._db, live_only=live_only, instance_id=instance_id
        ):
            repos = await worktree_store.repos_of_session(self._db, session.id)
            views.append(SessionView(session, tuple(repos)))
        return views

    async def repository_of(self, row: WorktreeRepo) -> Repository:
        """The repository a worktree belongs to (a repository with worktrees is not deleted
        before they are: `forget_repository`)."""
        repository = await repository_store.get(self._db, row.repository_id)
        if repository is None:
            raise WorktreeError(f"worktree {row.path}: its repository is no longer registered")
        return repository

    def session_json(
        self, view: SessionView, names: dict[int, str], *, now: datetime
    ) -> dict[str, Any]:
        """A session as the API shows it: status, size, age, idle time, each worktree."""
        session = view.session
        return {
            "id": session.id,
            "owner": session.owner,
            "branch": session.branch,
            "stream": session.stream,
            "status": session.status,
            "held_by": session.held_by,
            "error": session.error,
            "cleaned_reason": session.cleaned_reason,
            "created_at": session.created_at,
            "last_used_at": session.last_used_at,
            "cleaned_at": session.cleaned_at,
            "instance": session.instance_id,
            "age_seconds": round((now - from_text(session.created_at)).total_seconds(), 1),
            "idle_seconds": round((now - from_text(session.last_used_at)).total_seconds(), 1),
            "size_bytes": view.size_bytes,
            "repositories": [
                {
                    **row.as_json(port_count=self._port_block),
                    "repository": names.get(row.repository_id),
                }
                for row in view.repos
            ],
        }
