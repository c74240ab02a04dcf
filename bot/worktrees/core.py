"""The WorktreeManager's shared state and plumbing: settings, the layout under
WORKTREE_ROOT, one lock per mirror, events, the installation token, and reading sessions.

Every other part of the manager (bot/worktrees/manager.py lists them) builds on this class.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bot import sandbox
from bot.clock import Clock
from bot.config import Secret
from bot.events.bus import EventBus
from bot.worktrees.cleanup import PullRequestLookup
from bot.worktrees.records import SessionView, TokenSource
from bot.worktrees.setup_detector import SetupDetector
from storage import worktrees as worktree_store
from storage.database import Database
from storage.repositories import Repository
from storage.timestamps import to_text
from storage.worktrees import WorktreeSession

DEFAULT_PORT_FIRST = 20000
DEFAULT_PORT_BLOCK = 10
DEFAULT_QUOTA_BYTES = 50 * 1024**3
DEFAULT_IDLE_TTL_S = 3 * 86400.0
DEFAULT_SETUP_TIMEOUT_S = 1200.0
DEFAULT_INPUT_TIMEOUT_S = 3600.0


class ManagerCore:
    """Settings, state, paths, locks, events and session reads shared by every part."""

    def __init__(
        self,
        *,
        db: Database,
        bus: EventBus,
        clock: Clock,
        root: Path,
        detector: SetupDetector | None = None,
        token_source: TokenSource | None = None,
        pull_request_state: PullRequestLookup | None = None,
        setup_timeout_s: float = DEFAULT_SETUP_TIMEOUT_S,
        output_cap_bytes: int = sandbox.DEFAULT_OUTPUT_CAP_BYTES,
        default_quota_bytes: int = DEFAULT_QUOTA_BYTES,
        default_idle_ttl_s: float = DEFAULT_IDLE_TTL_S,
        input_timeout_s: float = DEFAULT_INPUT_TIMEOUT_S,
        port_first: int = DEFAULT_PORT_FIRST,
        port_block: int = DEFAULT_PORT_BLOCK,
        hidden_paths: Sequence[Path] = (),
        isolation: sandbox.Isolation = "auto",
        spares_per_repository: int = 0,
        new_id: Callable[[], str] = lambda: uuid.uuid4().hex[:12],
    ) -> None:
        self.db = db
        self.bus = bus
        self.clock = clock
        self.root = root.resolve()
        self.detector = detector or SetupDetector()
        self.token_source = token_source
        self.pull_request_state = pull_request_state
        self.setup_timeout_s = setup_timeout_s
        self.output_cap_bytes = output_cap_bytes
        self.default_quota_bytes = default_quota_bytes
        self.default_idle_ttl_s = default_idle_ttl_s
        self.input_timeout_s = input_timeout_s
        self.port_first = port_first
        self.port_block = port_block
        self.hidden_paths = tuple(hidden_paths)
        self.isolation: sandbox.Isolation = isolation
        self.new_id = new_id
        self._mirror_locks: dict[int, asyncio.Lock] = {}
        self._answers: dict[int, asyncio.Event] = {}
        self.spares_per_repository = spares_per_repository
        self._ready_spares: dict[int, list[tuple[Path, str]]] = {}  # (path, checked-out sha)
        self._spare_sizes: dict[str, int] = {}  # measured in the background at refill
        self._taken_sizes: dict[str, int | None] = {}
        self._refills: dict[int, asyncio.Task[None]] = {}
        self._refill_locks: dict[int, asyncio.Lock] = {}

    @property
    def mirrors_dir(self) -> Path:
        return self.root / "mirrors"

    @property
    def sessions_dir(self) -> Path:
        return self.root / "sessions"

    @property
    def store_dir(self) -> Path:
        return self.root / "store"

    @property
    def cache_dir(self) -> Path:
        return self.root / "cache"

    def cache_path(self, repository_id: int) -> Path:
        """The package caches of one repository, keyed by its stored id (never reused): shared
        by that repository's worktrees, never by another repository's."""
        return self.cache_dir / str(repository_id)

    @property
    def spares_dir(self) -> Path:
        return self.root / "spares"

    def mirror_path(self, repository: Repository) -> Path:
        return self.mirrors_dir / f"{repository.slug}.git"

    def store_path(self, repository: Repository) -> Path:
        """Where the gitignored files listed in `copy_files` are kept for this repository."""
        return self.store_dir / repository.slug

    def _lock(self, repository: Repository) -> asyncio.Lock:
        return self._mirror_locks.setdefault(repository.id, asyncio.Lock())

    async def _publish(
        self, session: WorktreeSession, type_name: str, data: dict[str, Any]
    ) -> None:
        await self.bus.publish(session.stream, type_name, {"session_id": session.id, **data})

    async def _token(self, repository: Repository, explicit: Secret | str | None) -> Secret | None:
        if isinstance(explicit, str):
            return Secret(explicit)
        if explicit is not None:
            return explicit
        if self.token_source is not None:
            return await self.token_source(repository)
        return None

    async def get(self, session_id: str) -> SessionView | None:
        session = await worktree_store.get_session(self.db, session_id)
        if session is None:
            return None
        return SessionView(
            session, tuple(await worktree_store.repos_of_session(self.db, session_id))
        )

    async def list_sessions(self, *, live_only: bool = True) -> list[SessionView]:
        views = []
        for session in await worktree_store.list_sessions(self.db, live_only=live_only):
            repos = await worktree_store.repos_of_session(self.db, session.id)
            views.append(SessionView(session, tuple(repos)))
        return views


def stamp(clock: Clock) -> str:
    return to_text(clock.now())
