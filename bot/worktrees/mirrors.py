"""A bare mirror per repository, cloned once and fetched incrementally before each job, and
pull request heads fetched into it (from a fork's URL too: fetched, never cloned).

Remote branches live in `refs/remotes/origin/*`, so biagent's own branches are never pruned;
the URL is the `clone_url` GitHub reports, followed when it changes.
"""

from __future__ import annotations

import asyncio
import logging
import re
import shutil
from pathlib import Path

from bot.config import Secret
from bot.worktrees.core import ManagerCore
from bot.worktrees.git import ORIGIN_UPLOAD_PACK, run_git
from storage import repositories as repository_store
from storage.repositories import Repository

log = logging.getLogger(__name__)


class Mirrors(ManagerCore):
    """Cloning and fetching the mirror and pull request heads (under its repository's lock)."""

    async def ensure_mirror(
        self, repository: Repository, *, installation_token: Secret | str | None = None
    ) -> Path:
        """Clone the mirror once, or fetch what is new; returns its path."""
        token = await self._token(repository, installation_token)
        async with self._lock(repository):
            return await self._ensure_mirror_locked(repository, token)

    async def _ensure_mirror_locked(self, repository: Repository, token: Secret | None) -> Path:
        mirror = self.mirror_path(repository)
        if not (mirror / "HEAD").is_file():
            partial = mirror.with_name(mirror.name + ".partial")
            await asyncio.to_thread(shutil.rmtree, partial, True)
            partial.parent.mkdir(parents=True, exist_ok=True)
            await run_git("init", "--quiet", "--bare", str(partial))
            await run_git("config", "remote.origin.url", repository.clone_url, cwd=partial)
            await run_git(
                "config", "remote.origin.fetch", "+refs/heads/*:refs/remotes/origin/*", cwd=partial
            )
            await run_git("config", "gc.autoDetach", "false", cwd=partial)
            await run_git(
                "fetch", "--quiet", "--prune", "--no-tags", ORIGIN_UPLOAD_PACK, "origin",
                cwd=partial, token=token,
            )  # fmt: skip
            partial.rename(mirror)
            log.info("%s: mirror cloned into %s", repository.full_name, mirror)
        else:
            # The URL GitHub reports can change (a renamed repository); follow it.
            await run_git("config", "remote.origin.url", repository.clone_url, cwd=mirror)
            await run_git(
                "fetch", "--quiet", "--prune", "--no-tags", ORIGIN_UPLOAD_PACK, "origin",
                cwd=mirror, token=token,
            )  # fmt: skip
        known = await repository_store.get(self.db, repository.id)
        if known is not None and known.default_branch is None:
            remote_head = await run_git(
                "ls-remote", ORIGIN_UPLOAD_PACK, "--symref", "origin", "HEAD", cwd=mirror,
                token=token,
            )  # fmt: skip
            match = re.search(r"^ref: refs/heads/(\S+)\s+HEAD", remote_head.stdout, re.MULTILINE)
            if match:
                await repository_store.set_default_branch(self.db, repository.id, match.group(1))
        return mirror

    async def _fetch_pull_request_head(
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
