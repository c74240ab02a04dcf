"""The review response service: what the review handlers, the scheduler and the API share.

Built once by the app factory and handed around in `Services.reviews`, with everything it holds
given at construction: the engine (None when none is configured: batches are then concluded
`skipped`, see worker.py), the GitHub App's connection (read at each use: the App may be created
while the service runs; until then no delivery reaches the handlers with a client, and the
scheduler waits for it), the permission and rules caches, and a way to wake the scheduler (a
`Doorbell`'s ring: the scheduler is built from this service, so the service cannot hold it).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from cachetools import LRUCache
from gidgethub.abc import GitHubAPI

from bot.clock import Clock
from bot.config import Settings
from bot.events.bus import EventBus
from bot.github.app import GitHubApp
from bot.github.connection import GitHubConnection
from bot.reviews.engine import ReviewEngine
from bot.reviews.permissions import PermissionCache
from bot.reviews.rules import RepoRules, RulesCache
from storage.database import Database


class Doorbell:
    """How the review handlers wake the scheduler that works their batches: the service rings,
    the scheduler (built after the service, from it) listens."""

    def __init__(self) -> None:
        self._listeners: list[Callable[[], None]] = []

    def listen(self, callback: Callable[[], None]) -> None:
        self._listeners.append(callback)

    def ring(self) -> None:
        for callback in self._listeners:
            callback()


@dataclass
class ReviewService:
    settings: Settings
    db: Database
    bus: EventBus
    clock: Clock
    connection: GitHubConnection
    engine: ReviewEngine | None = None
    wake_scheduler: Callable[[], None] = field(default=lambda: None)
    # (repository, review id) -> the state GitHub gave a submitted review, which never changes:
    # an approval's inline comments each ask about the same review.
    review_state_of: LRUCache[tuple[str, int], str] = field(
        default_factory=lambda: LRUCache(maxsize=4096)
    )

    permissions: PermissionCache = field(init=False)
    rules_cache: RulesCache = field(init=False)

    def __post_init__(self) -> None:
        self.permissions = PermissionCache(self.clock)
        self.rules_cache = RulesCache(self.settings, self.clock)

    @property
    def github(self) -> GitHubApp:
        """The App; GitHubNotConfigured before it is (no batch can be worked then)."""
        return self.connection.require()

    def client(self, installation_id: int) -> GitHubAPI:
        return self.github.client(installation_id)

    async def rules(self, gh: GitHubAPI, repository: str) -> RepoRules:
        return await self.rules_cache.rules(gh, repository)

    async def can_write(self, gh: GitHubAPI, repository: str, login: str) -> bool:
        return await self.permissions.can_write(gh, repository, login)

    @property
    def slug(self) -> str | None:
        identity = self.connection.app.identity if self.connection.app else None
        return identity.slug if identity else None

    @property
    def bot_login(self) -> str | None:
        identity = self.connection.app.identity if self.connection.app else None
        return identity.bot_login if identity else None

    @property
    def app_id(self) -> int | None:
        identity = self.connection.app.identity if self.connection.app else None
        return identity.app_id if identity else None

    def wake(self) -> None:
        self.wake_scheduler()
