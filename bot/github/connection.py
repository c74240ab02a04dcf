"""The GitHub part of the running service, read at each use: the App client and the webhook secret.

One `GitHubConnection` per process (web/composition.py stores it under GITHUB_CONNECTION). It is
empty while GitHub is not configured and is connected once: at start-up from the environment or
the saved credentials (bot/github/credentials.py), or later by the manifest flow
(web/setup_github.py), without a restart. Whatever talks to GitHub asks the connection when it
needs the App (`app`, `require`): the dispatcher's clients (`Services.github`), the review
service and its engine, the worktrees' tokens and pull-request lookups, the pipelines'
pull-request opener, the readiness check and the status page; the webhook route reads
`webhook_secret` for every delivery. None keeps a copy, so nothing is rebuilt when the App
arrives. What must start with the App (the review scheduler's loop) asks `on_connect`. The
connection owns the App's identity loading (GET /app, retried in the background) and stops it on
`close`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import aiohttp

from bot.clock import Clock
from bot.config import DEFAULT_SETTINGS, Secret
from bot.github.app import GitHubApp
from bot.github.credentials import AppCredentials
from bot.tasks import stop_tasks

log = logging.getLogger(__name__)


class GitHubNotConfigured(RuntimeError):
    """The GitHub App is needed and not configured yet."""


class GitHubConnection:
    def __init__(
        self,
        *,
        api_url: str,
        session: aiohttp.ClientSession,
        clock: Clock,
        write_spacing_s: float = DEFAULT_SETTINGS.github_write_spacing_seconds,
        webhook_secret: Secret | None = None,
    ) -> None:
        self.api_url = api_url
        self.session = session
        self.clock = clock
        self.write_spacing_s = write_spacing_s
        self.webhook_secret = webhook_secret
        self.app: GitHubApp | None = None
        self.credentials: AppCredentials | None = None
        self.origin: str | None = None  # where the App came from, for the status page and logs
        self._identity: asyncio.Task[None] | None = None
        self._listeners: list[Callable[[], None]] = []

    def on_connect(self, listener: Callable[[], None]) -> None:
        """Call `listener` when the App is connected (once; never if it already is)."""
        self._listeners.append(listener)

    def forget(self, listener: Callable[[], None]) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)

    def require(self) -> GitHubApp:
        if self.app is None:
            raise GitHubNotConfigured("the GitHub App is not configured")
        return self.app

    def connect(
        self, credentials: AppCredentials, *, webhook_secret: Secret | None, origin: str
    ) -> GitHubApp:
        """Start using the App (once): its client, its webhook secret, its identity loading."""
        if self.app is not None:
            raise RuntimeError(f"the GitHub App is already configured (from {self.origin})")
        self.app = GitHubApp(
            app_id=credentials.app_id,
            private_key=credentials.private_key,
            api_url=self.api_url,
            session=self.session,
            clock=self.clock,
            write_spacing_s=self.write_spacing_s,
        )
        self.credentials, self.origin = credentials, origin
        self.webhook_secret = webhook_secret
        self._identity = asyncio.create_task(
            self.app.keep_loading_identity(), name="github-identity"
        )
        log.info("GitHub App %s in use (from %s)", credentials.app_id, origin)
        listeners, self._listeners = self._listeners, []
        for listener in listeners:
            listener()
        return self.app

    async def close(self) -> None:
        if self._identity is not None:
            await stop_tasks([self._identity], grace_s=5.0)
