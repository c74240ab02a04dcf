"""GitHub App authentication: the app JWT, cached installation tokens, per-installation clients.

One `GitHubApp` per process holds one aiohttp session. Installation tokens are cached per
installation until a minute before their `expires_at` (cachetools TLRUCache on the injected
clock). `client(installation_id)` is the one factory of installation clients: a
`PoliteInstallationAPI` (manners.py) that asks for the cached token before every request, keeps
its installation's own ETag cache and waits when GitHub asks it to. GITHUB_API_URL is the base
of every call, which is all GitHub Enterprise Server needs.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import datetime

import aiohttp
import cachetools
import gidgethub.aiohttp
from gidgethub import apps

from bot.clock import Clock
from bot.config import DEFAULT_SETTINGS, Secret
from bot.github.manners import REQUESTER, ApiManners, PoliteInstallationAPI

log = logging.getLogger(__name__)

TOKEN_REFRESH_MARGIN_S = 60.0


@dataclass(frozen=True, slots=True)
class InstallationToken:
    token: Secret
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class AppIdentity:
    app_id: int
    slug: str
    name: str

    @property
    def bot_login(self) -> str:
        return f"{self.slug}[bot]"


class GitHubApp:
    def __init__(
        self,
        *,
        app_id: str,
        private_key: Secret,
        api_url: str,
        session: aiohttp.ClientSession,
        clock: Clock,
        write_spacing_s: float = DEFAULT_SETTINGS.github_write_spacing_seconds,
    ) -> None:
        self.app_id = app_id
        self.private_key = private_key
        self.api_url = api_url.rstrip("/")
        self.session = session
        self.clock = clock
        self.identity: AppIdentity | None = None
        self._tokens: cachetools.TLRUCache[int, InstallationToken] = cachetools.TLRUCache(
            maxsize=4096,
            ttu=lambda _key, value, _now: value.expires_at.timestamp() - TOKEN_REFRESH_MARGIN_S,
            timer=lambda: self.clock.now().timestamp(),
        )
        self._token_locks: dict[int, asyncio.Lock] = {}
        self.manners = ApiManners(clock, write_spacing_s=write_spacing_s)
        self.tokens_minted = 0

    def jwt(self) -> str:
        return apps.get_jwt(app_id=self.app_id, private_key=self.private_key.reveal())

    def app_client(self) -> gidgethub.aiohttp.GitHubAPI:
        """A client for app-level calls; pass `jwt=app.jwt()` to each call."""
        return gidgethub.aiohttp.GitHubAPI(self.session, REQUESTER, base_url=self.api_url)

    async def installation_token(self, installation_id: int) -> InstallationToken:
        cached = self._tokens.get(installation_id)
        if cached is not None:
            return cached
        lock = self._token_locks.setdefault(installation_id, asyncio.Lock())
        async with lock:
            cached = self._tokens.get(installation_id)
            if cached is not None:
                return cached
            response = await apps.get_installation_access_token(
                self.app_client(),
                installation_id=str(installation_id),
                app_id=self.app_id,
                private_key=self.private_key.reveal(),
            )
            token = InstallationToken(
                Secret(response["token"]),
                datetime.fromisoformat(response["expires_at"].replace("Z", "+00:00")),
            )
            self.tokens_minted += 1
            self._tokens[installation_id] = token
            log.info(
                "installation %s: new access token, expires %s", installation_id, token.expires_at
            )
            return token

    def forget_installation(self, installation_id: int) -> None:
        self._tokens.pop(installation_id, None)
        self.manners.forget(installation_id)

    def client(self, installation_id: int) -> PoliteInstallationAPI:
        """The installation's client, the one every handler, job and sweep uses."""
        return self.manners.client(self, installation_id)

    async def load_identity(self) -> AppIdentity:
        """GET /app: the app's slug, from which its bot login follows."""
        body = await self.app_client().getitem("/app", jwt=self.jwt())
        self.identity = AppIdentity(int(body["id"]), body["slug"], body.get("name") or body["slug"])
        log.info("GitHub App identity: %s (bot %s)", self.identity.slug, self.identity.bot_login)
        return self.identity

    async def keep_loading_identity(self, *, first_delay: float = 0.0) -> None:
        """Retry GET /app with backoff until it answers (GitHub may be unreachable at start)."""
        delay = max(first_delay, 5.0)
        while self.identity is None:
            try:
                await self.load_identity()
            except Exception as error:
                log.warning("GitHub App identity not loaded (%s); retrying in %.0fs", error, delay)
                await self.clock.sleep(delay)
                delay = min(delay * 2, 600.0)
