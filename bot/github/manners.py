"""GitHub API manners: the one installation client, which waits when GitHub asks it to.

`GitHubApp.client(installation_id)` (app.py) builds every installation client through
`ApiManners.client`: the dispatcher's handlers, the review worker and the worktree sweep all talk
to GitHub through a `PoliteInstallationAPI`. It asks the app for the (cached) installation token
before every request, so a long job never carries an expired token, and it keeps the gidgethub
ETag cache of its own installation, so one organisation's responses never serve another's.

GitHub's REST guidance, which `PoliteInstallationAPI` follows through gidgethub 6's two hooks:

- `Retry-After` on a 403/429 (a secondary rate limit): wait that many seconds, then retry;
- `x-ratelimit-remaining: 0` with `x-ratelimit-reset`: wait until the reset, then retry; and
  before a request, when the last answer said the quota is spent, wait for the reset first;
- a 403 that names a secondary rate limit without either header: wait a minute, doubling;
- 5xx: retry with exponential backoff, except a POST that creates something: GitHub can answer
  502/504 after it created the comment or check run, so a blind retry could write it twice. The
  error goes up instead, and the caller's keyed path (bot/reviews/replies.py by a comment's
  hidden marker, bot/reviews/checks.py by a check run's external_id) looks for what the first
  attempt wrote before writing again. Reactions are the exception: GitHub keeps one per
  user and content, so repeating one is harmless;
- content-creating calls (POST, PATCH, PUT, DELETE) are spaced per installation
  (`write_spacing_s`, GitHub asks for about a second), so one busy pull request cannot trip
  the secondary limits for the whole installation.

All waiting is on the injected clock, so tests see the waits without sleeping through them. The
retries themselves are gidgethub's loop (`_make_request` asks `handle_rate_limit_error` after
each failed attempt); this module only decides each wait, so bot/retry.py's policy, which wraps
a whole call, has no loop here to replace.
biagent never approves its own work: a request to submit an APPROVE review is refused here,
below every caller.

GraphQL (`gh.graphql(...)`, gidgethub's own) goes through the same client: the installation
token is fetched before the query (gidgethub's `graphql` does not pass through `_make_request`),
the endpoint is the one beside the REST base (`graphql_url`: `https://api.github.com/graphql`,
or `https://HOST/api/graphql` on GitHub Enterprise Server), and a mutation is spaced like any
other write.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import cachetools
import gidgethub
import gidgethub.aiohttp

from bot.clock import Clock
from bot.config import DEFAULT_SETTINGS

if TYPE_CHECKING:
    from bot.github.app import GitHubApp

log = logging.getLogger(__name__)

REQUESTER = "biagent"
ETAG_CACHE_SIZE = 500
CONTENT_CREATING = frozenset({"POST", "PATCH", "PUT", "DELETE"})


def retry_is_safe(method: str, url: str) -> bool:
    """Whether repeating a request that got a 5xx cannot write twice: reads and updates can be
    repeated; a POST creates something (a comment, a check run) unless it is a reaction."""
    if method.upper() != "POST":
        return True
    return url.split("?", 1)[0].rstrip("/").endswith("/reactions")


def is_final_refusal(error: Exception) -> bool:
    """A 4xx that asking again will not change (a locked conversation, a body GitHub rejects):
    not a rate limit, not an expired token, not a timeout. The caller gives up on that write."""
    if not isinstance(error, gidgethub.BadRequest) or isinstance(
        error, gidgethub.RateLimitExceeded
    ):
        return False
    status = int(error.status_code)
    if not 400 <= status < 500 or status in (401, 408, 429):
        return False
    headers = error.headers or {}
    if headers.get("retry-after") is not None or headers.get("x-ratelimit-remaining") == "0":
        return False
    return "rate limit" not in str(error).lower()


FINAL_QUERY_ERRORS = frozenset({"NOT_FOUND", "FORBIDDEN"})


def is_final_graphql_refusal(error: Exception) -> bool:
    """A GraphQL refusal asking again will not change: a query error GitHub types NOT_FOUND or
    FORBIDDEN (every one of them), or a 4xx other than 401, 403 and 429. Not a proxy's HTML
    page, an empty body, "Something went wrong", RATE_LIMITED or a secondary rate limit: the
    caller lets those go up, to be tried again."""
    if isinstance(error, gidgethub.QueryError):
        errors = (error.response or {}).get("errors") or [{}]
        return all(isinstance(e, dict) and e.get("type") in FINAL_QUERY_ERRORS for e in errors)
    if isinstance(error, gidgethub.BadGraphQLRequest):
        status = int(error.status_code)
        return 400 <= status < 500 and status not in (401, 403, 429)
    return False


def graphql_url(api_url: str) -> str:
    """The GraphQL endpoint of a REST base: GitHub Enterprise Server serves REST at
    `/api/v3` and GraphQL at `/api/graphql`; github.com (and a fake) at `/graphql`."""
    base = api_url.rstrip("/")
    if base.endswith("/api/v3"):
        return base[: -len("/v3")] + "/graphql"
    return base + "/graphql"


def is_mutation(query: str) -> bool:
    """Whether a GraphQL document is a mutation (spaced like a write), not a query."""
    return query.lstrip().startswith("mutation")


class SelfApprovalRefused(RuntimeError):
    """biagent was about to approve a pull request: it never approves its own work."""


@dataclass
class ApiManners:
    """Process-wide politeness state: when each installation last created content, and each
    installation's ETag cache (one per installation, never shared)."""

    clock: Clock
    write_spacing_s: float = DEFAULT_SETTINGS.github_write_spacing_seconds
    max_attempts: int = 5
    backoff_base_s: float = 1.0
    secondary_wait_s: float = 60.0
    longest_wait_s: float = 900.0
    _last_write: dict[int, float] = field(default_factory=dict)
    _write_locks: dict[int, asyncio.Lock] = field(default_factory=dict)
    _etag_caches: dict[int, cachetools.LRUCache[Any, Any]] = field(default_factory=dict)

    def client(self, app: GitHubApp, installation_id: int) -> PoliteInstallationAPI:
        cache = self._etag_caches.setdefault(
            installation_id, cachetools.LRUCache(maxsize=ETAG_CACHE_SIZE)
        )
        return PoliteInstallationAPI(app, installation_id, cache, self)

    def forget(self, installation_id: int) -> None:
        """An uninstalled installation: its cached answers go."""
        self._etag_caches.pop(installation_id, None)

    async def wait(self, reason: str, seconds: float) -> None:
        log.debug("waiting %.1fs: %s", seconds, reason)
        await self.clock.sleep(seconds)

    async def space_write(self, installation_id: int) -> None:
        if self.write_spacing_s <= 0:
            return
        lock = self._write_locks.setdefault(installation_id, asyncio.Lock())
        async with lock:
            last = self._last_write.get(installation_id)
            if last is not None:
                gap = last + self.write_spacing_s - self.clock.monotonic()
                if gap > 0:
                    await self.wait("write spacing", gap)
            self._last_write[installation_id] = self.clock.monotonic()


class PoliteInstallationAPI(gidgethub.aiohttp.GitHubAPI):
    """A gidgethub client for one installation: a fresh token when it needs one, and manners."""

    def __init__(
        self, app: GitHubApp, installation_id: int, cache: Any, manners: ApiManners
    ) -> None:
        super().__init__(app.session, REQUESTER, cache=cache, base_url=app.api_url)
        self.app = app
        self.installation_id = installation_id
        self.manners = manners

    async def sleep(self, seconds: float) -> None:
        await self.manners.clock.sleep(seconds)

    async def _make_request(
        self, method: str, url: str, url_vars: Any, data: Any, *args: Any, **kwargs: Any
    ) -> Any:
        if (
            method == "POST"
            and url.rstrip("/").endswith("/reviews")
            and isinstance(data, dict)
            and str(data.get("event", "")).upper() == "APPROVE"
        ):
            raise SelfApprovalRefused("biagent never approves a pull request")
        token = await self.app.installation_token(self.installation_id)
        self.oauth_token = token.token.reveal()
        return await super()._make_request(method, url, url_vars, data, *args, **kwargs)

    async def graphql(self, query: str, *, endpoint: str | None = None, **variables: Any) -> Any:
        """gidgethub's GraphQL call at the endpoint beside the REST base, with a fresh token
        and the REST manners. GraphQL has its own rate-limit bucket, which gidgethub writes
        over `rate_limit`: that stays the REST one, for the REST calls' waits."""
        await self.manage_rate_limit(
            method="POST" if is_mutation(query) else "GET", url=endpoint or "graphql"
        )
        token = await self.app.installation_token(self.installation_id)
        self.oauth_token = token.token.reveal()
        rest_rate_limit = self.rate_limit
        try:
            return await super().graphql(
                query, endpoint=endpoint or graphql_url(self.app.api_url), **variables
            )
        finally:
            self.rate_limit = rest_rate_limit

    async def manage_rate_limit(self, *, method: str, url: str) -> None:
        rate_limit = self.rate_limit
        if rate_limit is not None and rate_limit.remaining <= 0:
            until_reset = (rate_limit.reset_datetime - self.manners.clock.now()).total_seconds()
            if 0 < until_reset <= self.manners.longest_wait_s:
                log.warning(
                    "installation %s: rate limit spent, waiting %.0fs for the reset",
                    self.installation_id,
                    until_reset,
                )
                await self.manners.wait("rate limit reset", until_reset)
        if method.upper() in CONTENT_CREATING:
            await self.manners.space_write(self.installation_id)

    async def handle_rate_limit_error(
        self, *, method: str, url: str, exception: gidgethub.HTTPException, attempt: int
    ) -> bool:
        if attempt >= self.manners.max_attempts:
            return False
        delay = self._delay_for(exception, attempt, method=method, url=url)
        if delay is None or delay > self.manners.longest_wait_s:
            return False
        log.warning(
            "installation %s: %s %s answered %s; retrying in %.1fs (attempt %d)",
            self.installation_id,
            method,
            url,
            int(exception.status_code),
            delay,
            attempt,
        )
        await self.manners.wait(f"{int(exception.status_code)}", delay)
        return True

    def _delay_for(
        self, exception: gidgethub.HTTPException, attempt: int, *, method: str, url: str
    ) -> float | None:
        status = int(exception.status_code)
        headers = exception.headers
        if status >= 500:
            if not retry_is_safe(method, url):
                return None
            return self.manners.backoff_base_s * (2 ** (attempt - 1))
        if status not in (403, 429):
            return None
        retry_after = headers.get("retry-after")
        if retry_after is not None:
            try:
                return max(0.0, float(retry_after))
            except ValueError:
                return self.manners.secondary_wait_s
        if headers.get("x-ratelimit-remaining") == "0" and headers.get("x-ratelimit-reset"):
            try:
                reset = float(headers["x-ratelimit-reset"])
            except ValueError:
                return None
            return max(1.0, reset - self.manners.clock.now().timestamp())
        if "secondary rate limit" in str(exception).lower() or status == 429:
            return self.manners.secondary_wait_s * (2 ** (attempt - 1))
        return None
