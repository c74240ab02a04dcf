"""Who may drive biagent on a repository: write permission, asked of GitHub and cached.

`GET /repos/{owner}/{repo}/collaborators/{user}/permission` answers `permission` (admin, write,
read, none) and `role_name` (admin, maintain, write, triage, read). Admin, maintain and write
may run commands and ask biagent in; anyone else gets one polite refusal. Answers are kept
`PERMISSION_TTL_S` on the injected clock: a command burst costs one call, and a revoked
permission stops working within minutes.
"""

from __future__ import annotations

import logging

import cachetools
import gidgethub
from gidgethub.abc import GitHubAPI

from bot.clock import Clock

log = logging.getLogger(__name__)

PERMISSION_TTL_S = 600.0
WRITE_ROLES = frozenset({"admin", "maintain", "write"})


class PermissionCache:
    def __init__(self, clock: Clock, ttl_s: float = PERMISSION_TTL_S) -> None:
        self._cache: cachetools.TTLCache[tuple[str, str], bool] = cachetools.TTLCache(
            maxsize=4096, ttl=ttl_s, timer=clock.monotonic
        )

    async def can_write(self, gh: GitHubAPI, repository: str, login: str) -> bool:
        key = (repository.lower(), login.lower())
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        try:
            answer = await gh.getitem(f"/repos/{repository}/collaborators/{login}/permission")
        except gidgethub.BadRequest as error:
            if int(error.status_code) not in (403, 404):
                raise
            allowed = False  # not a collaborator (404), or we may not look (403)
        else:
            allowed = (
                answer.get("permission") in ("admin", "write")
                or answer.get("role_name") in WRITE_ROLES
            )
        self._cache[key] = allowed
        log.info("%s: %s %s write access", repository, login, "has" if allowed else "lacks")
        return allowed
