"""A bare mirror per repository, cloned once and fetched incrementally before each job, and
pull request heads fetched into it (from a fork's URL too: fetched, never cloned).

Remote branches live in `refs/remotes/origin/*`, so biagent's own branches are never pruned;
the URL is the `clone_url` GitHub reports, followed when it changes. `Mirrors` owns the lock
per repository that serializes git operations on its mirror, and finds the installation token
for a repository's network operations.
"""

from __future__ import annotations

import asyncio
import logging
import re
import shutil
from pathlib import Path

from bot.config import Secret
from bot.gitops.runner import ORIGIN_UPLOAD_PACK, run_git
from bot.worktrees.layout import WorktreeLayout
from bot.worktrees.records import TokenSource
from storage import repositories as repository_store
from storage.database import Database
from storage.repositories import Repository

log = logging.getLogger(__name__)


class Mirrors:
    """Cloning and fetching the mirror and pull request heads, under each repository's lock."""

    def __init__(
        self, db: Database, layout: WorktreeLayout, token_source: TokenSource | None
    ) -> None:
        self._db = db
        self._layout = layout
        self._token_source = token_source
        self._locks: dict[int, asyncio.Lock] = {}

    def lock(self, repository: Repository) -> asyncio.Lock:
        """The lock every git operation on the repository's mirror holds."""
        return self._locks.setdefault(repository.id, asyncio.Lock())

    async def token(self, repository: Repository, explicit: Secret | str | None) -> Secret | None:
        """The token a caller gave, else the repository's installation token, else None."""
        if isinstance(explicit, str):
            return Secret(explicit)
        if explicit is not None:
            return explicit
        if self._token_source is not None:
            return await self._token_source(repository)
        return None

    async def ensure_mirror(
        self, repository: Repository, *, installation_token: Secret | str | None = None
    ) -> Path:
        """Clone the mirror once, or fetch what is new; returns its path."""
        token = await self.token(repository, installation_token)
        async with self.lock(repository):
            return await self.ensure_locked(repository, token)

    async def ensure_locked(self, repository: Repository, token: Secret | None) -> Path:
        """`ensure_mirror` for a caller that holds the repository's lock."""
        mirror = self._layout.mirror_path(repository)
        if not (mirror / "HEAD").is_file():
            await self._clone(repository, mirror, token)
        else:
            # The URL GitHub reports can change (a renamed repository); follow it.
            await run_git("config", "remote.origin.url", repository.clone_url, cwd=mirror)
            await _fetch_origin(mirror, token)
        await self._learn_default_branch(repository, mirror, token)
        return mirror

    async def _clone(self, repository: Repository, mirror: Path, token: Secret | None) -> None:
        partial = mirror.with_name(mirror.name + ".partial")
        await asyncio.to_thread(shutil.rmtree, partial, True)
        partial.parent.mkdir(parents=True, exist_ok=True)
        await run_git("init", "--quiet", "--bare", str(partial))
        await run_git("config", "remote.origin.url", repository.clone_url, cwd=partial)
        await run_git(
            "config", "remote.origin.fetch", "+refs/heads/*:refs/remotes/origin/*", cwd=partial
        )
        await run_git("config", "gc.autoDetach", "false", cwd=partial)
        await _fetch_origin(partial, token)
        partial.rename(mirror)
        log.info("%s: mirror cloned into %s", repository.full_name, mirror)

    async def _learn_default_branch(
        self, repository: Repository, mirror: Path, token: Secret | None
    ) -> None:
        known = await repository_store.get(self._db, repository.id)
        if known is None or known.default_branch is not None:
            return
        remote_head = await run_git(
            "ls-remote", ORIGIN_UPLOAD_PACK, "--symref", "origin", "HEAD", cwd=mirror,
            token=token,
        )  # fmt: skip
        match = re.search(r"^ref: refs/heads/(\S+)\s+HEAD", remote_head.stdout, re.MULTILINE)
        if match:
            await repository_store.set_default_branch(self._db, repository.id, match.group(1))

    async def fetch_pull_request_head(
        self, mirror: Path, url: str, head_ref: str, pr_number: int | None, token: Secret | None
    ) -> str:
        """Fetch a PR's head branch (from a fork's URL or the base's) into the mirror, under
        `refs/biagent/pull/<n>/head`; returns its sha. The caller holds the mirror's lock."""
        local_ref = f"refs/biagent/pull/{pr_number}/head"
        await run_git(
            "fetch", "--quiet", "--no-tags", url, f"+refs/heads/{head_ref}:{local_ref}",
            cwd=mirror, token=token,
        )  # fmt: skip
        return (await run_git("rev-parse", local_ref, cwd=mirror)).stdout.strip()

    async def fetch_pull_request(
        self,
        repository: Repository,
        url: str,
        head_ref: str,
        pr_number: int | None,
        installation_token: Secret | str | None,
    ) -> str:
        """`fetch_pull_request_head` into the repository's mirror, taking its lock."""
        token = await self.token(repository, installation_token)
        mirror = self._layout.mirror_path(repository)
        async with self.lock(repository):
            return await self.fetch_pull_request_head(mirror, url, head_ref, pr_number, token)


async def _fetch_origin(mirror: Path, token: Secret | None) -> None:
    await run_git(
        "fetch", "--quiet", "--prune", "--no-tags", ORIGIN_UPLOAD_PACK, "origin",
        cwd=mirror, token=token,
    )  # fmt: skip
