"""WorktreeManager: an isolated git worktree per agent job, over a cached mirror per repository.

Layout under WORKTREE_ROOT:

    mirrors/<owner>__<name>.git     bare mirror, fetched incrementally (remote branches live in
                                    refs/remotes/origin/*, so our own branches are never pruned)
    sessions/<session>/<owner>__<name>   one worktree per repository of a session
    store/<owner>__<name>/          gitignored files (.env ...) copied into each new worktree
    cache/{uv,pip,npm,pnpm,yarn,go,cargo}   package caches shared by every worktree
    spares/<owner>__<name>/<id>     worktrees checked out ahead of time (WORKTREE_SPARES)

A session is one job (a ticket's pipeline or a PR review) and holds a worktree of each of its
repositories, all on the branch `biagent/<owner>`. The row of a worktree is written before
`git worktree add` and the worktree is locked (`git worktree lock --reason`) from its creation
to its cleanup, so start-up reconciliation (`reconcile`) can tell a half-created or abandoned
worktree from a live one and repair the difference. Git operations on one mirror are serialized
by a lock per repository; different repositories proceed in parallel. The installation token is
handed to git per command (bot/worktrees/git.py). Setup runs under bot/sandbox.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import shutil
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path, PurePosixPath
from typing import Any

from bot import sandbox
from bot.clock import Clock
from bot.config import Secret
from bot.events.bus import EventBus
from bot.worktrees import disk
from bot.worktrees.cleanup import (
    PullRequestLookup,
    PullRequestState,
    decide_cleanup,
)
from bot.worktrees.git import ORIGIN_UPLOAD_PACK, GitError, list_worktrees, run_git
from bot.worktrees.setup_detector import RepositoryConfigError, SetupDetector, SetupPlan
from storage import repositories as repository_store
from storage import worktrees as worktree_store
from storage.database import Database
from storage.repositories import Repository
from storage.timestamps import from_text, to_text
from storage.worktrees import WorktreeRepo, WorktreeSession

log = logging.getLogger(__name__)

BRANCH_PREFIX = "biagent/"
STATUS_BATCH_LINES = 20
DEFAULT_PORT_FIRST = 20000
DEFAULT_PORT_BLOCK = 10
DEFAULT_QUOTA_BYTES = 50 * 1024**3
DEFAULT_IDLE_TTL_S = 3 * 86400.0
DEFAULT_SETUP_TIMEOUT_S = 1200.0
DEFAULT_INPUT_TIMEOUT_S = 3600.0
CACHE_VARIABLES = {
    "uv": ("UV_CACHE_DIR",),
    "pip": ("PIP_CACHE_DIR",),
    "npm": ("npm_config_cache",),
    "pnpm": ("npm_config_store_dir", "PNPM_STORE_DIR"),
    "yarn": ("YARN_CACHE_FOLDER",),
    "go": ("GOMODCACHE",),
    "cargo": ("CARGO_HOME",),
}

TokenSource = Callable[[Repository], Awaitable[Secret | None]]


class WorktreeError(RuntimeError):
    """A worktree operation could not be done; the message says why."""


class WorktreeBusy(WorktreeError):
    """The branch is checked out by another live worktree, or the session is held."""


class QuotaExceeded(WorktreeError):
    """The repository's worktrees use their whole quota and none is idle enough to go."""


class WorktreeSetupError(WorktreeError):
    """Setup failed, timed out, or changed tracked files."""


class PushRejected(WorktreeError):
    """The remote branch moved since its sha was recorded (the lease failed), or push failed."""


@dataclass(frozen=True, slots=True)
class SessionView:
    """A session and its worktrees, as returned to callers and the API."""

    session: WorktreeSession
    repos: tuple[WorktreeRepo, ...]

    @property
    def id(self) -> str:
        return self.session.id

    @property
    def status(self) -> str:
        return self.session.status

    def path_of(self, repository_id: int) -> Path:
        for repo in self.repos:
            if repo.repository_id == repository_id:
                return Path(repo.path)
        raise KeyError(repository_id)

    @property
    def size_bytes(self) -> int:
        return sum(repo.size_bytes or 0 for repo in self.repos)


@dataclass(frozen=True, slots=True)
class PushResult:
    sha: str
    ref: str
    updated: bool  # False when the remote already had this commit


@dataclass(frozen=True, slots=True)
class FollowResult:
    """What `follow_pull_request` found and did."""

    head_sha: str  # the remote branch's head now: the new lease
    moved: bool  # the branch had moved since the recorded sha
    rebased: bool  # our commits were replayed on top of it
    conflicted: bool  # they could not be: the worktree now stands on the new head, ours dropped


@dataclass(frozen=True, slots=True)
class ReconcileReport:
    repaired: tuple[str, ...] = ()
    cleaned: tuple[str, ...] = ()
    orphans_removed: tuple[str, ...] = ()


@dataclass
class _StatusStream:
    """Setup output lines, published as worktree_status events in small batches."""

    manager: WorktreeManager
    session: WorktreeSession
    repository: Repository
    lines: list[str] = field(default_factory=list)

    async def line(self, text: str) -> None:
        self.lines.append(text)
        if len(self.lines) >= STATUS_BATCH_LINES:
            await self.flush()

    async def flush(self) -> None:
        if not self.lines:
            return
        detail, self.lines = "\n".join(self.lines), []
        await self.manager._publish(
            self.session,
            "worktree_status",
            {"status": "setup_output", "repository": self.repository.full_name, "detail": detail},
        )


def branch_name(owner: str) -> str:
    """`biagent/<owner>` with anything git would refuse in a ref name replaced."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "-", owner).strip(".-") or "job"
    cleaned = re.sub(r"\.{2,}", ".", cleaned)
    if cleaned.endswith(".lock"):
        cleaned = cleaned[: -len(".lock")] + "-lock"
    return BRANCH_PREFIX + cleaned


class WorktreeManager:
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

    # -- paths ----------------------------------------------------------------------------

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

    def mirror_path(self, repository: Repository) -> Path:
        return self.mirrors_dir / f"{repository.slug}.git"

    def store_path(self, repository: Repository) -> Path:
        """Where the gitignored files listed in `copy_files` are kept for this repository."""
        return self.store_dir / repository.slug

    def _lock(self, repository: Repository) -> asyncio.Lock:
        return self._mirror_locks.setdefault(repository.id, asyncio.Lock())

    # -- events ---------------------------------------------------------------------------

    async def _publish(
        self, session: WorktreeSession, type_name: str, data: dict[str, Any]
    ) -> None:
        await self.bus.publish(session.stream, type_name, {"session_id": session.id, **data})

    # -- mirrors --------------------------------------------------------------------------

    async def _token(self, repository: Repository, explicit: Secret | str | None) -> Secret | None:
        if isinstance(explicit, str):
            return Secret(explicit)
        if explicit is not None:
            return explicit
        if self.token_source is not None:
            return await self.token_source(repository)
        return None

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

    # -- sessions -------------------------------------------------------------------------

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

    async def create_session(
        self,
        owner: str,
        repositories: Sequence[Repository],
        *,
        stream: str | None = None,
        installation_token: Secret | str | None = None,
        base_ref: str | None = None,
        run_setup: bool = True,
        wait_for_input: bool = True,
        pr_number: int | None = None,
    ) -> SessionView:
        """A worktree of each repository on `biagent/<owner>`, set up; several run in parallel.

        `owner` is a ticket key or `pr-<number>`. `base_ref` (a branch of the remote) defaults
        to each repository's default branch.
        """
        if not repositories:
            raise WorktreeError("a session needs at least one repository")
        for repository in repositories:
            await self._make_room(repository)
        session_id = self.new_id()
        session = await worktree_store.create_session(
            self.db,
            session_id=session_id,
            owner=owner,
            branch=branch_name(owner),
            stream=stream or f"worktree:{session_id}",
            now=self.clock.now(),
        )
        await self._publish(
            session,
            "worktree_session_creating",
            {
                "repositories": [repository.full_name for repository in repositories],
                "owner": owner,
                "branch": session.branch,
            },
        )
        try:
            await asyncio.gather(
                *(
                    self._add_worktree(
                        session,
                        repository,
                        installation_token=installation_token,
                        start=None,
                        base_ref=base_ref,
                        push_url=repository.clone_url,
                        push_ref=session.branch,
                        pr_number=pr_number,
                    )
                    for repository in repositories
                )
            )
        except BaseException as error:
            await self._abandon(session, error)
            raise
        await worktree_store.set_session_status(
            self.db, session_id, "created", now=self.clock.now()
        )
        try:
            if run_setup:
                await self.run_setup(session_id, wait_for_input=wait_for_input)
        finally:
            # After the job's own work, so the refill's checkout does not compete with it.
            for repository in repositories:
                self._schedule_refill(repository)
        view = await self.get(session_id)
        assert view is not None
        return view

    async def _abandon(self, session: WorktreeSession, error: BaseException) -> None:
        """A session whose worktrees could not all be made: say why, leave nothing behind."""
        await worktree_store.set_session_status(
            self.db, session.id, "failed", now=self.clock.now(), error=str(error)
        )
        await self._publish(session, "worktree_status", {"status": "failed", "detail": str(error)})
        await self.cleanup_session(session.id, f"creation failed: {error}", force=True)

    async def _add_worktree(
        self,
        session: WorktreeSession,
        repository: Repository,
        *,
        installation_token: Secret | str | None,
        start: str | None,
        base_ref: str | None,
        push_url: str | None,
        push_ref: str | None,
        pr_number: int | None,
        recorded_sha: str | None = None,
        fetch_from: tuple[str, str] | None = None,
    ) -> WorktreeRepo:
        token = await self._token(repository, installation_token)
        path = self.sessions_dir / session.id / repository.slug
        row = await worktree_store.add_repo(
            self.db,
            session_id=session.id,
            repository_id=repository.id,
            path=str(path),
            branch=session.branch,
            port_block=self.port_block,
            first_port=self.port_first,
            push_url=push_url,
            push_ref=push_ref,
            pr_number=pr_number,
            now=self.clock.now(),
        )
        try:
            base_sha, recorded_sha = await self._make_worktree(
                session, repository, path, token, start, base_ref, pr_number, recorded_sha,
                fetch_from,
            )  # fmt: skip
        except BaseException:
            await asyncio.to_thread(shutil.rmtree, path, True)
            await worktree_store.update_repo(
                self.db, row.id, now=self.clock.now(), status="removed", port_base=None
            )
            raise
        await worktree_store.update_repo(
            self.db,
            row.id,
            now=self.clock.now(),
            status="created",
            base_sha=base_sha,
            recorded_sha=recorded_sha,
        )
        await self._publish(
            session,
            "worktree_repo_created",
            {
                "repository": repository.full_name,
                "path": str(path),
                "branch": session.branch,
                "ports": [row.port_base, (row.port_base or 0) + self.port_block - 1],
            },
        )
        fresh_row = await worktree_store.get_repo(self.db, row.id)
        assert fresh_row is not None
        return fresh_row

    async def _make_worktree(
        self,
        session: WorktreeSession,
        repository: Repository,
        path: Path,
        token: Secret | None,
        start: str | None,
        base_ref: str | None,
        pr_number: int | None,
        recorded_sha: str | None,
        fetch_from: tuple[str, str] | None,
    ) -> tuple[str, str | None]:
        """Fetch, then `git worktree add --lock`; returns (base sha, recorded sha)."""
        async with self._lock(repository):
            mirror = await self._ensure_mirror_locked(repository, token)
            if fetch_from is not None:
                url, ref = fetch_from
                local_ref = f"refs/biagent/pull/{pr_number}/head"
                await run_git(
                    "fetch", "--quiet", "--no-tags", url, f"+refs/heads/{ref}:{local_ref}",
                    cwd=mirror, token=token,
                )  # fmt: skip
                start = (await run_git("rev-parse", local_ref, cwd=mirror)).stdout.strip()
                recorded_sha = start
            if start is None:
                fresh = await repository_store.get(self.db, repository.id)
                branch = base_ref or (fresh.default_branch if fresh else None) or "main"
                start = f"refs/remotes/origin/{branch}"
            base = await run_git("rev-parse", "--verify", f"{start}^{{commit}}", cwd=mirror)
            await self._git_worktree_add(
                mirror, repository, session, path, start, move_branch=fetch_from is not None
            )
        return base.stdout.strip(), recorded_sha

    async def _git_worktree_add(
        self,
        mirror: Path,
        repository: Repository,
        session: WorktreeSession,
        path: Path,
        start: str,
        *,
        move_branch: bool = False,
    ) -> None:
        """Add the worktree on the session's branch. An existing branch is continued, or with
        `move_branch` (a pull request's checkout) moved to `start` first."""
        branch_ref = f"refs/heads/{session.branch}"
        exists = await run_git(
            "rev-parse", "--verify", "--quiet", branch_ref, cwd=mirror, check=False
        )
        reason = f"biagent session {session.id} ({session.owner})"
        path.parent.mkdir(parents=True, exist_ok=True)
        if exists.returncode == 0:
            in_use = [
                entry
                for entry in await list_worktrees(mirror)
                if entry.branch == branch_ref and entry.path.exists()
            ]
            if in_use:
                raise WorktreeBusy(
                    f"{session.branch} is checked out in {in_use[0].path}; one job per branch"
                )
            if move_branch:
                await self._move_branch(mirror, session.branch, start)
        if await self._take_spare(mirror, repository, session, path, start, exists.returncode == 0):
            return
        if exists.returncode == 0:
            # The branch survives from an earlier job of the same owner: continue its work.
            await run_git(
                "worktree", "add", "--quiet", "--lock", "--reason", reason, str(path),
                session.branch, cwd=mirror,
            )  # fmt: skip
        else:
            await run_git(
                "worktree", "add", "--quiet", "--lock", "--reason", reason, "--no-track",
                "-b", session.branch, str(path), start, cwd=mirror,
            )  # fmt: skip

    async def _move_branch(self, mirror: Path, branch: str, start: str) -> None:
        """Point a branch no worktree has checked out at `start`.

        A pull request's session must start from the head just fetched, because that sha is
        the lease of its push: a branch kept from an earlier session (its unpushed commits on
        an older head) pushed with a lease on the new head would replace the commits in
        between. `git branch --force` refuses a branch checked out anywhere, and the caller
        has made sure none is. The old tip is logged: its objects stay in the mirror.
        """
        old_tip = (await run_git("rev-parse", f"refs/heads/{branch}", cwd=mirror)).stdout.strip()
        new_tip = (await run_git("rev-parse", f"{start}^{{commit}}", cwd=mirror)).stdout.strip()
        if old_tip == new_tip:
            return
        log.info("%s: %s moved from %s to the fetched head %s", mirror.name, branch,
                 old_tip[:12], new_tip[:12])  # fmt: skip
        await run_git("branch", "--quiet", "--force", "--no-track", branch, new_tip, cwd=mirror)

    # -- spares ---------------------------------------------------------------------------
    #
    # Writing thousands of files is most of the cost of a new worktree. A spare is a worktree
    # checked out ahead of time (detached, locked) at the default branch's tip; a new session
    # moves it into place and switches it to its branch, which rewrites only the files that
    # differ. It is refilled in the background after each hand-out; when none is ready a
    # session falls back to a plain `git worktree add`.

    @property
    def spares_dir(self) -> Path:
        return self.root / "spares"

    async def _take_spare(
        self,
        mirror: Path,
        repository: Repository,
        session: WorktreeSession,
        path: Path,
        start: str,
        branch_exists: bool,
    ) -> bool:
        """Move a ready spare to `path` on the session's branch (mirror lock held)."""
        ready = self._ready_spares.get(repository.id)
        if not ready:
            return False
        spare, spare_sha = ready.pop(0)
        reason = f"biagent session {session.id} ({session.owner})"
        try:
            start_sha = (await run_git("rev-parse", f"{start}^{{commit}}", cwd=mirror)).stdout
            await run_git("worktree", "unlock", str(spare), cwd=mirror)
            await run_git("worktree", "move", str(spare), str(path), cwd=mirror)
            await run_git("worktree", "lock", "--reason", reason, str(path), cwd=mirror)
            if branch_exists:
                await run_git("switch", "--quiet", session.branch, cwd=path)
            elif start_sha.strip() == spare_sha:
                # Same commit: what `switch -c` would do, without re-reading every file.
                await run_git("branch", "--no-track", session.branch, spare_sha, cwd=mirror)
                await run_git("symbolic-ref", "HEAD", f"refs/heads/{session.branch}", cwd=path)
            else:
                await run_git(
                    "switch", "--quiet", "--no-track", "-c", session.branch, start, cwd=path
                )
            self._taken_sizes[str(path)] = self._spare_sizes.pop(str(spare), None)
        except GitError as error:
            log.warning("%s: spare unusable (%s); adding a worktree", repository.full_name, error)
            for leftover in (spare, path):
                await run_git("worktree", "unlock", str(leftover), cwd=mirror, check=False)
                await run_git(
                    "worktree", "remove", "--force", str(leftover), cwd=mirror, check=False
                )
                await asyncio.to_thread(shutil.rmtree, leftover, True)
            await run_git("worktree", "prune", cwd=mirror, check=False)
            return False
        return True

    def _schedule_refill(self, repository: Repository) -> None:
        if self.spares_per_repository <= 0:
            return
        running = self._refills.get(repository.id)
        if running is None or running.done():
            self._refills[repository.id] = asyncio.create_task(
                self._refill_logged(repository), name=f"worktree-spare-{repository.slug}"
            )

    async def _refill_logged(self, repository: Repository) -> None:
        try:
            await self.prepare_spares(repository)
        except Exception:
            log.exception("%s: spare worktree not prepared", repository.full_name)

    async def prepare_spares(self, repository: Repository) -> int:
        """Check spares out until the repository has its count ready; returns how many."""
        ready = self._ready_spares.setdefault(repository.id, [])
        mirror = self.mirror_path(repository)
        refill_lock = self._refill_locks.setdefault(repository.id, asyncio.Lock())
        async with refill_lock:
            while len(ready) < self.spares_per_repository:
                await self._add_spare(repository, mirror, ready)
        return len(ready)

    async def spares_ready(self, repository: Repository) -> int:
        """Wait for the background refill (if one runs), then make sure spares are ready."""
        running = self._refills.get(repository.id)
        if running is not None:
            await asyncio.shield(running)
        return await self.prepare_spares(repository)

    async def _add_spare(
        self, repository: Repository, mirror: Path, ready: list[tuple[Path, str]]
    ) -> None:
        path = self.spares_dir / repository.slug / self.new_id()
        path.parent.mkdir(parents=True, exist_ok=True)
        async with self._lock(repository):
            fresh = await repository_store.get(self.db, repository.id) or repository
            start = f"refs/remotes/origin/{fresh.default_branch or 'main'}"
            # Registered without files under the lock; the slow checkout runs outside it,
            # in the spare's own index, so it never delays another job's git operations.
            await run_git(
                "worktree", "add", "--quiet", "--no-checkout", "--detach", "--lock",
                "--reason", "biagent spare", str(path), start, cwd=mirror,
            )  # fmt: skip
        await run_git("reset", "--quiet", "--hard", cwd=path)
        sha = (await run_git("rev-parse", "HEAD", cwd=path)).stdout.strip()
        self._spare_sizes[str(path)] = await asyncio.to_thread(disk.allocated_bytes, path)
        ready.append((path, sha))

    async def _discard_spares(self, repository: Repository | None = None) -> None:
        """Remove spare worktrees (all of them, or one repository's)."""
        for current in await repository_store.list_all(self.db):
            if repository is not None and current.id != repository.id:
                continue
            self._ready_spares.pop(current.id, None)
            mirror = self.mirror_path(current)
            spare_root = self.spares_dir / current.slug
            if (mirror / "HEAD").is_file():
                async with self._lock(current):
                    for entry in await list_worktrees(mirror):
                        if entry.path.parent == spare_root:
                            await run_git(
                                "worktree", "unlock", str(entry.path), cwd=mirror, check=False
                            )
                            await run_git(
                                "worktree", "remove", "--force", str(entry.path), cwd=mirror,
                                check=False,
                            )  # fmt: skip
                    await run_git("worktree", "prune", cwd=mirror, check=False)
            await asyncio.to_thread(shutil.rmtree, spare_root, True)

    async def close(self) -> None:
        """Stop background spare refills (the app's shutdown)."""
        for task in self._refills.values():
            task.cancel()
        for task in self._refills.values():
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._refills.clear()

    # -- pull requests --------------------------------------------------------------------

    async def checkout_pull_request(
        self,
        repository: Repository,
        *,
        pr_number: int,
        head_ref: str,
        head_sha: str | None = None,
        clone_url: str | None = None,
        installation_token: Secret | str | None = None,
        stream: str | None = None,
        run_setup: bool = True,
        wait_for_input: bool = True,
    ) -> SessionView:
        """A worktree of a PR's head, fetched (never cloned) into the mirror; its sha recorded.

        `clone_url` is the head repository's (a fork's) URL, the base repository's by default;
        `push` later updates `head_ref` there with a lease on the recorded sha. A live session of
        the same PR is reused: fetched again and moved to the new head when it has no work of
        its own.
        """
        owner = f"pr-{pr_number}"
        head_url = clone_url or repository.clone_url
        for existing in await worktree_store.live_sessions_for_owner(self.db, owner):
            repos = await worktree_store.repos_of_session(self.db, existing.id)
            mine = [repo for repo in repos if repo.repository_id == repository.id]
            if mine and existing.status not in ("failed", "cleaning"):
                await self._refresh_pull_request(
                    existing, repository, mine[0], head_url, head_ref, installation_token
                )
                view = await self.get(existing.id)
                assert view is not None
                return view
        await self._make_room(repository)
        session_id = self.new_id()
        session = await worktree_store.create_session(
            self.db,
            session_id=session_id,
            owner=owner,
            branch=branch_name(owner),
            stream=stream or f"worktree:{session_id}",
            now=self.clock.now(),
        )
        await self._publish(
            session,
            "worktree_session_creating",
            {"repositories": [repository.full_name], "owner": owner, "branch": session.branch},
        )
        try:
            row = await self._add_worktree(
                session,
                repository,
                installation_token=installation_token,
                start=None,
                base_ref=None,
                push_url=head_url,
                push_ref=head_ref,
                pr_number=pr_number,
                fetch_from=(head_url, head_ref),
            )
        except BaseException as error:
            await self._abandon(session, error)
            raise
        if head_sha and row.recorded_sha != head_sha:
            log.info(
                "%s#%d: head moved from %s to %s since the event; using the fetched one",
                repository.full_name,
                pr_number,
                head_sha[:12],
                (row.recorded_sha or "?")[:12],
            )
        await worktree_store.set_session_status(
            self.db, session_id, "created", now=self.clock.now()
        )
        try:
            if run_setup:
                await self.run_setup(session_id, wait_for_input=wait_for_input)
        finally:
            self._schedule_refill(repository)
        view = await self.get(session_id)
        assert view is not None
        return view

    async def _refresh_pull_request(
        self,
        session: WorktreeSession,
        repository: Repository,
        row: WorktreeRepo,
        head_url: str,
        head_ref: str,
        installation_token: Secret | str | None,
    ) -> None:
        token = await self._token(repository, installation_token)
        mirror = self.mirror_path(repository)
        local_ref = f"refs/biagent/pull/{row.pr_number}/head"
        async with self._lock(repository):
            await run_git(
                "fetch", "--quiet", "--no-tags", head_url, f"+refs/heads/{head_ref}:{local_ref}",
                cwd=mirror, token=token,
            )  # fmt: skip
            fetched = (await run_git("rev-parse", local_ref, cwd=mirror)).stdout.strip()
        if fetched == row.recorded_sha:
            await worktree_store.touch_session(self.db, session.id, now=self.clock.now())
            return
        worktree = Path(row.path)
        head = (await run_git("rev-parse", "HEAD", cwd=worktree)).stdout.strip()
        dirty = await self._tracked_changes(worktree)
        if head != row.recorded_sha or dirty:
            raise WorktreeBusy(
                f"{repository.full_name}#{row.pr_number}: the PR head moved to {fetched[:12]}"
                " while the worktree has work of its own; clean the session first"
            )
        # Our own branch in our own worktree, with nothing of ours on it: follow the new head.
        await run_git("reset", "--quiet", "--hard", fetched, cwd=worktree)
        await worktree_store.update_repo(
            self.db, row.id, now=self.clock.now(), recorded_sha=fetched, push_url=head_url
        )
        await worktree_store.touch_session(self.db, session.id, now=self.clock.now())

    async def push(
        self,
        session_id: str,
        *,
        repository_id: int | None = None,
        installation_token: Secret | str | None = None,
    ) -> PushResult:
        """Push the worktree's HEAD to its remote branch, leased on the recorded sha.

        `--force-with-lease=<ref>:<recorded sha>` refuses when someone else pushed since the
        sha was recorded (a new ref expects it absent); the new sha is recorded on success.
        """
        view = await self.get(session_id)
        if view is None:
            raise WorktreeError(f"no session {session_id}")
        rows = [r for r in view.repos if repository_id in (None, r.repository_id)]
        if len(rows) != 1:
            raise WorktreeError("name the repository to push (the session has several)")
        row = rows[0]
        repository = await repository_store.get(self.db, row.repository_id)
        assert repository is not None
        if row.push_url is None or row.push_ref is None:
            raise WorktreeError(f"{repository.full_name}: this worktree has nowhere to push")
        token = await self._token(repository, installation_token)
        worktree = Path(row.path)
        head = (await run_git("rev-parse", "HEAD", cwd=worktree)).stdout.strip()
        if head == row.recorded_sha:
            return PushResult(head, row.push_ref, False)
        remote_ref = f"refs/heads/{row.push_ref}"
        lease = f"--force-with-lease={remote_ref}:{row.recorded_sha or ''}"
        async with self._lock(repository):
            try:
                await run_git(
                    "push", "--quiet", "--porcelain", lease, row.push_url, f"HEAD:{remote_ref}",
                    cwd=worktree, token=token,
                )  # fmt: skip
            except GitError as error:
                raise PushRejected(
                    f"{repository.full_name}: push to {row.push_ref} refused:"
                    f" {error.stderr.strip()}"
                ) from error
        await worktree_store.update_repo(self.db, row.id, now=self.clock.now(), recorded_sha=head)
        await worktree_store.touch_session(self.db, session_id, now=self.clock.now())
        return PushResult(head, row.push_ref, True)

    async def _pull_request_row(
        self, session_id: str, repository_id: int | None
    ) -> tuple[WorktreeRepo, Repository]:
        view = await self.get(session_id)
        if view is None:
            raise WorktreeError(f"no session {session_id}")
        rows = [r for r in view.repos if repository_id in (None, r.repository_id)]
        if len(rows) != 1:
            raise WorktreeError("name the repository (the session has several)")
        repository = await repository_store.get(self.db, rows[0].repository_id)
        assert repository is not None
        if rows[0].push_url is None or rows[0].push_ref is None or rows[0].pr_number is None:
            raise WorktreeError(f"{repository.full_name}: this worktree is not a PR checkout")
        return rows[0], repository

    async def follow_pull_request(
        self,
        session_id: str,
        *,
        repository_id: int | None = None,
        installation_token: Secret | str | None = None,
    ) -> FollowResult:
        """The PR branch moved under us (a push was refused): fetch its new head and replay our
        commits (recorded sha..HEAD) on top of it, so their commits stay and ours follow.

        When the replay conflicts it is aborted and the worktree is reset to the new head (our
        commits dropped, nothing of theirs touched): the caller starts its work over there. The
        new head becomes the recorded sha, the lease of the next `push`. Commit first: a
        worktree with uncommitted changes is refused by git's rebase.
        """
        row, repository = await self._pull_request_row(session_id, repository_id)
        assert row.push_url is not None and row.push_ref is not None
        token = await self._token(repository, installation_token)
        mirror = self.mirror_path(repository)
        local_ref = f"refs/biagent/pull/{row.pr_number}/head"
        async with self._lock(repository):
            await run_git(
                "fetch", "--quiet", "--no-tags", row.push_url,
                f"+refs/heads/{row.push_ref}:{local_ref}", cwd=mirror, token=token,
            )  # fmt: skip
            fetched = (await run_git("rev-parse", local_ref, cwd=mirror)).stdout.strip()
        if fetched == row.recorded_sha:
            return FollowResult(fetched, moved=False, rebased=False, conflicted=False)
        worktree = Path(row.path)
        rebased = False
        if row.recorded_sha:
            replay = await run_git(
                "rebase", "--quiet", "--onto", fetched, row.recorded_sha,
                cwd=worktree, check=False,
            )  # fmt: skip
            rebased = replay.returncode == 0
            if not rebased:
                log.info(
                    "%s#%s: our commits do not replay onto %s: starting over there (%s)",
                    repository.full_name,
                    row.pr_number,
                    fetched[:12],
                    replay.stderr.strip()[-300:],
                )
                await run_git("rebase", "--abort", cwd=worktree, check=False)
        if not rebased:
            await self._reset_worktree(worktree, fetched)
        await worktree_store.update_repo(
            self.db, row.id, now=self.clock.now(), recorded_sha=fetched
        )
        await worktree_store.touch_session(self.db, session_id, now=self.clock.now())
        return FollowResult(fetched, moved=True, rebased=rebased, conflicted=not rebased)

    async def discard_changes(self, session_id: str, *, repository_id: int | None = None) -> str:
        """Put a PR worktree back on its recorded sha (edits and unpushed commits dropped), so a
        failed job leaves nothing that blocks the next checkout of the PR; returns that sha."""
        row, _ = await self._pull_request_row(session_id, repository_id)
        assert row.recorded_sha is not None
        await self._reset_worktree(Path(row.path), row.recorded_sha)
        await worktree_store.touch_session(self.db, session_id, now=self.clock.now())
        return row.recorded_sha

    async def _reset_worktree(self, worktree: Path, sha: str) -> None:
        # Untracked files go too, ignored ones (a set-up .venv, node_modules) stay.
        await run_git("reset", "--quiet", "--hard", sha, cwd=worktree)
        await run_git("clean", "--quiet", "-fd", cwd=worktree)

    async def attach_pull_request(
        self, session_id: str, repository_id: int, pr_number: int
    ) -> None:
        """Tie a ticket session's worktree to the PR opened from it: its merge cleans it."""
        for row in await worktree_store.repos_of_session(self.db, session_id):
            if row.repository_id == repository_id:
                await worktree_store.update_repo(
                    self.db, row.id, now=self.clock.now(), pr_number=pr_number
                )

    # -- use ------------------------------------------------------------------------------

    async def hold(self, session_id: str, holder: str) -> None:
        """Mark the session in use by a job: no cleanup (idle, quota, merge) touches it."""
        if not await worktree_store.hold_session(self.db, session_id, holder, now=self.clock.now()):
            raise WorktreeBusy(f"session {session_id} is held by another job or is gone")

    async def release(self, session_id: str) -> None:
        await worktree_store.release_session(self.db, session_id, now=self.clock.now())

    def environment(self, row: WorktreeRepo) -> dict[str, str]:
        """Variables for any command run in the worktree: its ports and the shared caches."""
        environment: dict[str, str] = {}
        for name, variables in CACHE_VARIABLES.items():
            for variable in variables:
                environment[variable] = str(self.cache_dir / name)
        if row.port_base is not None:
            last = row.port_base + self.port_block - 1
            environment.update(
                {
                    "PORT": str(row.port_base),
                    "BIAGENT_PORT_BASE": str(row.port_base),
                    "BIAGENT_PORT_COUNT": str(self.port_block),
                    "BIAGENT_PORTS": f"{row.port_base}-{last}",
                }
            )
        return environment

    async def sandbox_paths(self, row: WorktreeRepo) -> tuple[list[Path], list[Path]]:
        """(writable, hidden) paths for bot/sandbox.py when running in this worktree.

        Writable: the worktree, its private git dir in the mirror (index, HEAD) and the shared
        caches. Hidden: other worktrees, the per-repository file store, and what the service
        was told to hide (database files, the GitHub private key).
        """
        worktree = Path(row.path)
        git_dir = await run_git(
            "rev-parse", "--absolute-git-dir", cwd=worktree, optional_locks=False
        )
        writable = [Path(git_dir.stdout.strip()), self.cache_dir]
        hidden = [self.sessions_dir, self.store_dir, *self.hidden_paths]
        return writable, hidden

    async def command_sandbox(self, row: WorktreeRepo) -> sandbox.SandboxScope:
        """What any command run in this worktree gets from bot/sandbox.py: the environment
        (ports, caches) and the writable and hidden paths. Setup uses it; so does the agents'
        bash, through `AgentContext.sandbox`. The writable paths exist when this returns."""
        writable, hidden = await self.sandbox_paths(row)
        for path in writable:
            path.mkdir(parents=True, exist_ok=True)
        return sandbox.SandboxScope(
            env=self.environment(row), writable_paths=tuple(writable), hidden_paths=tuple(hidden)
        )

    # -- setup ----------------------------------------------------------------------------

    async def answer_setup(
        self,
        repository_id: int,
        *,
        setup_command: str | None,
        test_command: str | None = None,
        answered_by: str,
    ) -> list[str]:
        """Store a person's answer for the repository and wake the setups waiting for it."""
        await repository_store.record_answer(
            self.db,
            repository_id,
            setup_command=setup_command,
            test_command=test_command,
            answered_by=answered_by,
            now=self.clock.now(),
        )
        answered = await worktree_store.answer_input_requests(
            self.db,
            repository_id,
            answer=setup_command if setup_command is not None else "",
            now=self.clock.now(),
        )
        waiter = self._answers.pop(repository_id, None)
        if waiter is not None:
            waiter.set()
        return answered

    async def run_setup(self, session_id: str, *, wait_for_input: bool = True) -> SessionView:
        """Set up every worktree of the session that is not ready; raises on a failed setup."""
        session = await worktree_store.get_session(self.db, session_id)
        if session is None:
            raise WorktreeError(f"no session {session_id}")
        await worktree_store.set_session_status(
            self.db, session_id, "setting_up", now=self.clock.now()
        )
        rows = [
            row
            for row in await worktree_store.repos_of_session(self.db, session_id)
            if row.status not in ("ready", "removed")
        ]
        outcomes = await asyncio.gather(
            *(self._setup_one(session, row, wait_for_input) for row in rows),
            return_exceptions=True,
        )
        failures = [outcome for outcome in outcomes if isinstance(outcome, BaseException)]
        waiting = any(outcome == "needs_input" for outcome in outcomes)
        now = self.clock.now()
        if failures:
            message = "; ".join(str(failure) for failure in failures)
            await worktree_store.set_session_status(
                self.db, session_id, "failed", now=now, error=message
            )
            first = failures[0]
            if isinstance(first, WorktreeError):
                raise first
            raise WorktreeSetupError(message) from first
        if waiting:
            await worktree_store.set_session_status(self.db, session_id, "needs_input", now=now)
        else:
            await worktree_store.set_session_status(self.db, session_id, "ready", now=now)
            every = await worktree_store.repos_of_session(self.db, session_id)
            await self._publish(
                session,
                "worktree_session_ready",
                {"paths": [row.path for row in every if row.status != "removed"]},
            )
        view = await self.get(session_id)
        assert view is not None
        return view

    async def _plan(self, repository: Repository, worktree: Path) -> SetupPlan:
        return await asyncio.to_thread(
            self.detector.detect,
            worktree,
            repository=repository.full_name,
            answered_setup=repository.setup_command,
            answered_test=repository.test_command,
        )

    async def _setup_one(self, session: WorktreeSession, row: WorktreeRepo, wait: bool) -> str:
        repository = await repository_store.get(self.db, row.repository_id)
        assert repository is not None
        worktree = Path(row.path)
        try:
            plan = await self._plan(repository, worktree)
        except RepositoryConfigError as error:
            await self._fail_setup(session, row, repository, str(error), None, None)
            raise WorktreeSetupError(f"{repository.full_name}: {error}") from error
        while not plan.confident:
            if not await self._ask(session, row, repository, plan, wait):
                return "needs_input"
            repository = await repository_store.get(self.db, row.repository_id)
            assert repository is not None
            plan = await self._plan(repository, worktree)
        await worktree_store.update_repo(
            self.db,
            row.id,
            now=self.clock.now(),
            status="setup_running",
            setup_command=plan.setup_command,
        )
        notes = await self._copy_stored_files(repository, worktree, plan.copy_files)
        for note in notes:
            await self._publish(
                session,
                "worktree_status",
                {"status": "copy_files", "repository": repository.full_name, "detail": note},
            )
        command = plan.setup_command
        await self._publish(
            session,
            "worktree_setup_started",
            {
                "repository": repository.full_name,
                "command": command or "",
                "source": plan.source,
                "test_command": plan.test_command,
            },
        )
        if command is None:
            result = None
        else:
            scope = await self.command_sandbox(row)
            output = _StatusStream(self, session, repository)
            result = await sandbox.run_command(
                command,
                worktree,
                timeout_s=self.setup_timeout_s,
                output_cap_bytes=self.output_cap_bytes,
                env=scope.env,
                writable_paths=scope.writable_paths,
                hidden_paths=scope.hidden_paths,
                on_line=output.line,
                isolation=self.isolation,
            )
            await output.flush()
            if not result.ok:
                why = (
                    f"timed out after {self.setup_timeout_s:.0f}s"
                    if result.timed_out
                    else f"exited {result.exit_code}"
                )
                message = f"{repository.full_name}: setup `{command}` {why}"
                await self._fail_setup(session, row, repository, message, result, command)
                raise WorktreeSetupError(message)
        changed = [] if command is None else await self._tracked_changes(worktree)
        if changed:
            message = (
                f"{repository.full_name}: setup changed tracked files, which would end up in"
                f" the agent's commits: {', '.join(changed[:20])}"
            )
            await self._fail_setup(session, row, repository, message, result, command)
            raise WorktreeSetupError(message)
        size = self._taken_sizes.pop(row.path, None) if command is None else None
        if size is None:
            size = await asyncio.to_thread(disk.allocated_bytes, worktree)
        await worktree_store.update_repo(
            self.db,
            row.id,
            now=self.clock.now(),
            status="ready",
            setup_exit_code=None if result is None else result.exit_code,
            setup_output=None if result is None else result.output[-self.output_cap_bytes :],
            setup_seconds=None if result is None else round(result.duration_s, 3),
            size_bytes=size,
            size_measured_at=_stamp(self.clock),
        )
        await self._publish(
            session,
            "worktree_status",
            {
                "status": "setup_done",
                "repository": repository.full_name,
                "detail": f"ready, {disk.human_size(size)} on disk",
            },
        )
        return "ready"

    async def _fail_setup(
        self,
        session: WorktreeSession,
        row: WorktreeRepo,
        repository: Repository,
        message: str,
        result: sandbox.SandboxResult | None,
        command: str | None,
    ) -> None:
        log.error("session %s: %s", session.id, message)
        await worktree_store.update_repo(
            self.db,
            row.id,
            now=self.clock.now(),
            status="setup_failed",
            setup_command=command,
            setup_exit_code=None if result is None else result.exit_code,
            setup_output=None if result is None else result.output[-self.output_cap_bytes :],
            setup_seconds=None if result is None else round(result.duration_s, 3),
        )
        await self._publish(
            session,
            "worktree_status",
            {"status": "setup_failed", "repository": repository.full_name, "detail": message},
        )

    async def _ask(
        self,
        session: WorktreeSession,
        row: WorktreeRepo,
        repository: Repository,
        plan: SetupPlan,
        wait: bool,
    ) -> bool:
        """Ask a person how to set the repository up; True once answered (when waiting)."""
        question = plan.question or f"How is {repository.full_name} set up?"
        pending = await worktree_store.pending_input_requests(self.db, repository.id)
        waiter = self._answers.setdefault(repository.id, asyncio.Event())
        if not pending:
            request = await worktree_store.add_input_request(
                self.db,
                request_id=self.new_id(),
                repository_id=repository.id,
                session_id=session.id,
                question=question,
                choices=list(plan.choices),
                now=self.clock.now(),
            )
            await self._publish(
                session,
                "pipeline_needs_input",
                {
                    "question": question,
                    "request_id": request.id,
                    "repository": repository.full_name,
                    "choices": list(plan.choices),
                },
            )
            await self.bus.publish(
                session.stream,
                "user_input_request",
                {
                    "request_id": request.id,
                    "question": question,
                    "choices": list(plan.choices),
                    "repository": repository.full_name,
                    "repository_id": repository.id,
                    "session_id": session.id,
                    "answer_url": f"/api/repositories/{repository.id}/answers",
                },
            )
        await worktree_store.update_repo(
            self.db, row.id, now=self.clock.now(), status="needs_input"
        )
        await worktree_store.set_session_status(
            self.db, session.id, "needs_input", now=self.clock.now()
        )
        if not wait:
            return False
        try:
            await asyncio.wait_for(waiter.wait(), self.input_timeout_s)
        except TimeoutError:
            return False
        return True

    async def _copy_stored_files(
        self, repository: Repository, worktree: Path, names: Sequence[str]
    ) -> list[str]:
        """Copy listed gitignored files from the repository's store; refuse tracked paths."""
        notes = []
        store = self.store_path(repository)
        for name in names:
            relative = PurePosixPath(name)
            if relative.is_absolute() or ".." in relative.parts or not relative.parts:
                raise WorktreeSetupError(f"{repository.full_name}: copy_files entry {name!r}")
            ignored = await run_git(
                "check-ignore", "--quiet", str(relative), cwd=worktree, check=False
            )
            if ignored.returncode != 0:
                raise WorktreeSetupError(
                    f"{repository.full_name}: copy_files lists {name}, which is not gitignored;"
                    " only ignored files are copied in"
                )
            source = store / relative
            if not source.is_file():
                notes.append(f"{name}: not in the store ({source}); skipped")
                continue
            target = worktree / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            await asyncio.to_thread(shutil.copy2, source, target)
            notes.append(f"{name}: copied from the store")
        return notes

    async def _tracked_changes(self, worktree: Path) -> list[str]:
        status = await run_git(
            "status", "--porcelain", "--untracked-files=no", cwd=worktree, optional_locks=False
        )
        return [line[3:] for line in status.stdout.splitlines() if line.strip()]

    # -- cleanup --------------------------------------------------------------------------

    async def cleanup_session(
        self,
        session_id: str,
        reason: str,
        *,
        force_delete_branch: bool = False,
        force: bool = False,
    ) -> bool:
        """Remove the session's worktrees, delete branches where safe, prune; False if held.

        A branch is deleted when `force_delete_branch` (its PR merged) or when every commit on
        it is also on a remote branch; otherwise it is kept and the removal says so.
        """
        session = await worktree_store.get_session(self.db, session_id)
        if session is None or session.status == "cleaned":
            return False
        if session.held_by is not None and not force:
            log.info(
                "session %s is held by %s; not cleaned (%s)", session_id, session.held_by, reason
            )
            return False
        await worktree_store.set_session_status(
            self.db, session_id, "cleaning", now=self.clock.now(), error=session.error
        )
        freed = 0
        kept_branches = []
        for row in await worktree_store.repos_of_session(self.db, session_id):
            if row.status == "removed":
                continue
            repository = await repository_store.get(self.db, row.repository_id)
            if repository is None:
                continue
            freed += row.size_bytes or 0
            if not await self._remove_worktree(
                repository, Path(row.path), row.branch, force_delete_branch=force_delete_branch
            ):
                kept_branches.append(f"{repository.full_name}:{row.branch}")
        session_dir = self.sessions_dir / session_id
        await asyncio.to_thread(shutil.rmtree, session_dir, True)
        await worktree_store.mark_session_cleaned(
            self.db, session_id, reason=reason, now=self.clock.now()
        )
        await self._publish(
            session,
            "worktree_session_cleaned",
            {"reason": reason, "freed_bytes": freed, "kept_branches": kept_branches},
        )
        log.info("session %s cleaned (%s)", session_id, reason)
        return True

    async def _remove_worktree(
        self, repository: Repository, path: Path, branch: str, *, force_delete_branch: bool
    ) -> bool:
        """Unlock, remove and prune one worktree; True when its branch was deleted too."""
        mirror = self.mirror_path(repository)
        if not (mirror / "HEAD").is_file():
            await asyncio.to_thread(shutil.rmtree, path, True)
            return True
        async with self._lock(repository):
            listed = {entry.path: entry for entry in await list_worktrees(mirror)}
            entry = listed.get(path)
            if entry is not None:
                if entry.locked:
                    await run_git("worktree", "unlock", str(path), cwd=mirror, check=False)
                if not entry.prunable:
                    await run_git(
                        "worktree", "remove", "--force", str(path), cwd=mirror, check=False
                    )
            await asyncio.to_thread(shutil.rmtree, path, True)
            await run_git("worktree", "prune", cwd=mirror)
            return await self._delete_branch(mirror, branch, force_delete_branch)

    async def _delete_branch(self, mirror: Path, branch: str, force: bool) -> bool:
        ref = f"refs/heads/{branch}"
        exists = await run_git("rev-parse", "--verify", "--quiet", ref, cwd=mirror, check=False)
        if exists.returncode != 0:
            return True
        still_used = [e for e in await list_worktrees(mirror) if e.branch == ref]
        if still_used:
            return False
        if not force:
            containing = await run_git(
                "for-each-ref", "--contains", ref, "--format=%(refname)", "refs/remotes/",
                cwd=mirror,
            )  # fmt: skip
            if not containing.stdout.strip():
                log.info("%s: %s has commits found on no remote branch; kept", mirror.name, branch)
                return False
        await run_git("branch", "--quiet", "-D", branch, cwd=mirror)
        return True

    async def cleanup_for_pull_request(
        self, full_name: str, pr_number: int, state: PullRequestState
    ) -> list[str]:
        """The PR's state decides (squash merges included); returns the sessions cleaned."""
        decision = decide_cleanup(state)
        repository = await repository_store.get_by_name(self.db, full_name)
        if repository is None or not decision.remove_worktree:
            return []
        cleaned = []
        rows = await worktree_store.live_repos_for_pull_request(self.db, repository.id, pr_number)
        for session_id in dict.fromkeys(row.session_id for row in rows):
            if await self.cleanup_session(
                session_id,
                f"{decision.reason} ({full_name}#{pr_number})",
                force_delete_branch=decision.force_delete_branch,
            ):
                cleaned.append(session_id)
        return cleaned

    async def check_and_cleanup_merged(self) -> list[str]:
        """Scheduled: ask GitHub about every PR a live worktree belongs to; clean the ended."""
        if self.pull_request_state is None:
            return []
        cleaned: list[str] = []
        seen: set[tuple[int, int]] = set()
        for row in await worktree_store.live_repos(self.db):
            if row.pr_number is None or (row.repository_id, row.pr_number) in seen:
                continue
            seen.add((row.repository_id, row.pr_number))
            repository = await repository_store.get(self.db, row.repository_id)
            if repository is None:
                continue
            try:
                state = await self.pull_request_state(repository, row.pr_number)
            except Exception as error:
                log.warning("%s#%d: state unknown (%s)", repository.full_name, row.pr_number, error)
                continue
            if state is not None:
                cleaned += await self.cleanup_for_pull_request(
                    repository.full_name, row.pr_number, state
                )
        return cleaned

    async def cleanup_idle(self) -> list[str]:
        """Clean sessions unused for longer than their repositories' idle TTL (never held)."""
        now = self.clock.now()
        cleaned = []
        for view in await self.list_sessions():
            if view.session.held_by is not None or view.status in ("creating", "cleaning"):
                continue
            ttls = []
            for row in view.repos:
                repository = await repository_store.get(self.db, row.repository_id)
                if repository is not None and repository.idle_ttl_seconds is not None:
                    ttls.append(float(repository.idle_ttl_seconds))
            ttl = min(ttls) if ttls else self.default_idle_ttl_s
            idle = now - from_text(view.session.last_used_at)
            if idle > timedelta(seconds=ttl):
                hours = idle.total_seconds() / 3600
                if await self.cleanup_session(view.id, f"idle for {hours:.1f} h"):
                    cleaned.append(view.id)
        return cleaned

    def quota_of(self, repository: Repository) -> int:
        return (
            repository.quota_bytes
            if repository.quota_bytes is not None
            else self.default_quota_bytes
        )

    async def usage(self, repository: Repository) -> int:
        """Bytes the repository's live worktrees use (last measurement of each)."""
        rows = await worktree_store.live_repos(self.db, repository_id=repository.id)
        return sum(row.size_bytes or 0 for row in rows)

    async def _make_room(self, repository: Repository) -> None:
        """Before a new worktree: free idle sessions of the repository while over its quota."""
        repository = await repository_store.get(self.db, repository.id) or repository
        quota = self.quota_of(repository)
        if await self.usage(repository) < quota:
            return
        candidates = []
        for view in await self.list_sessions():
            if view.session.held_by is None and any(
                row.repository_id == repository.id for row in view.repos
            ):
                candidates.append(view)
        candidates.sort(key=lambda view: view.session.last_used_at)
        for view in candidates:
            await self.cleanup_session(view.id, f"{repository.full_name} over its disk quota")
            if await self.usage(repository) < quota:
                return
        raise QuotaExceeded(
            f"{repository.full_name}: worktrees use {disk.human_size(await self.usage(repository))}"
            f" of a {disk.human_size(quota)} quota and every one is in use"
        )

    async def measure(self) -> int:
        """Measure every live worktree's size now; returns the total."""
        total = 0
        for row in await worktree_store.live_repos(self.db):
            path = Path(row.path)
            size = await asyncio.to_thread(disk.allocated_bytes, path)
            total += size
            await worktree_store.update_repo(
                self.db,
                row.id,
                now=self.clock.now(),
                size_bytes=size,
                size_measured_at=_stamp(self.clock),
            )
        return total

    async def cleanup_orphans(self) -> list[str]:
        """Remove worktree directories and git worktrees that no live session owns."""
        live_paths = {Path(row.path) for row in await worktree_store.live_repos(self.db)}
        live_sessions = {view.id for view in await self.list_sessions()}
        removed: list[str] = []
        for repository in await repository_store.list_all(self.db):
            mirror = self.mirror_path(repository)
            if not (mirror / "HEAD").is_file():
                continue
            for entry in await list_worktrees(mirror):
                path = entry.path
                if path in live_paths or not path.is_relative_to(self.sessions_dir):
                    continue
                await self._remove_worktree(
                    repository, entry.path, (entry.branch or "").removeprefix("refs/heads/"),
                    force_delete_branch=False,
                )  # fmt: skip
                removed.append(str(entry.path))
        if self.sessions_dir.is_dir():
            for session_dir in sorted(self.sessions_dir.iterdir()):
                if session_dir.name in live_sessions:
                    for child in sorted(session_dir.iterdir()):
                        if child not in live_paths:
                            await asyncio.to_thread(_remove_path, child)
                            removed.append(str(child))
                    continue
                await asyncio.to_thread(_remove_path, session_dir)
                removed.append(str(session_dir))
        for partial in (
            sorted(self.mirrors_dir.glob("*.partial")) if self.mirrors_dir.is_dir() else []
        ):
            await asyncio.to_thread(shutil.rmtree, partial, True)
            removed.append(str(partial))
        for path in removed:
            log.info("orphan removed: %s", path)
        return removed

    async def sweep(self) -> dict[str, list[str]]:
        """The scheduled pass: merged/closed PRs, idle sessions, sizes, orphans."""
        report = {
            "merged": await self.check_and_cleanup_merged(),
            "idle": await self.cleanup_idle(),
        }
        await self.measure()
        report["orphans"] = await self.cleanup_orphans()
        return report

    async def run_sweeps(self, interval_s: float) -> None:
        """Sweep forever on the injected clock (a task of the app's lifecycle)."""
        while True:
            await self.clock.sleep(interval_s)
            try:
                await self.sweep()
            except Exception:
                log.exception("worktree sweep failed")

    async def forget_repository(self, repository: Repository, *, force: bool = False) -> None:
        """Before unregistering: clean its sessions (only when `force` if any) and its mirror."""
        live = [
            view
            for view in await self.list_sessions()
            if any(r.repository_id == repository.id and r.status != "removed" for r in view.repos)
        ]
        if live and not force:
            raise WorktreeBusy(
                f"{repository.full_name} has {len(live)} live worktree session(s);"
                " delete them first or force"
            )
        for view in live:
            await self.cleanup_session(view.id, f"{repository.full_name} unregistered", force=True)
        running = self._refills.pop(repository.id, None)
        if running is not None:
            running.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await running
        await self._discard_spares(repository)
        async with self._lock(repository):
            await asyncio.to_thread(shutil.rmtree, self.mirror_path(repository), True)

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
            "age_seconds": round((now - from_text(session.created_at)).total_seconds(), 1),
            "idle_seconds": round((now - from_text(session.last_used_at)).total_seconds(), 1),
            "size_bytes": view.size_bytes,
            "repositories": [
                {
                    **row.as_json(port_count=self.port_block),
                    "repository": names.get(row.repository_id),
                }
                for row in view.repos
            ],
        }

    # -- start-up -------------------------------------------------------------------------

    async def reconcile(self) -> ReconcileReport:
        """Make the tables and the disk agree after a crash (call once at start-up).

        A session caught while being created or cleaned is cleaned; one caught in setup is
        marked failed (its worktree is kept; run_setup again). A live worktree missing on disk
        ends its session; a live one found unlocked is locked again and a stale index.lock
        (no git of ours runs yet) is removed. Worktrees and directories no session owns go.
        """
        repaired: list[str] = []
        cleaned: list[str] = []
        now = self.clock.now()
        # Spares are not in the tables; whatever a crash left of them is rebuilt on demand.
        await self._discard_spares()
        for view in await self.list_sessions():
            session = view.session
            if session.status in ("creating", "cleaning"):
                reason = (
                    "interrupted while being created"
                    if session.status == "creating"
                    else "cleanup finished after a restart"
                )
                await self.cleanup_session(session.id, reason, force=True)
                cleaned.append(session.id)
                continue
            missing = [
                row
                for row in view.repos
                if row.status != "removed" and not _is_worktree(Path(row.path))
            ]
            if missing:
                await self.cleanup_session(session.id, "worktree missing on disk", force=True)
                cleaned.append(session.id)
                continue
            if session.held_by is not None:
                # The job that held it died with the process.
                await worktree_store.release_session(self.db, session.id, now=now)
            if session.status == "setting_up" or any(
                r.status == "setup_running" for r in view.repos
            ):
                for row in view.repos:
                    if row.status in ("setup_running", "created"):
                        await worktree_store.update_repo(
                            self.db, row.id, now=now, status="setup_failed"
                        )
                await worktree_store.set_session_status(
                    self.db, session.id, "failed", now=now,
                    error="setup interrupted by a restart; run setup again",
                )  # fmt: skip
                repaired.append(session.id)
            for row in view.repos:
                if row.status != "removed" and await self._relock(row, session):
                    repaired.append(session.id)
        orphans = await self.cleanup_orphans()
        report = ReconcileReport(tuple(dict.fromkeys(repaired)), tuple(cleaned), tuple(orphans))
        if repaired or cleaned or orphans:
            log.info(
                "worktrees reconciled: %d repaired, %d cleaned, %d orphans removed",
                len(report.repaired),
                len(cleaned),
                len(orphans),
            )
        return report

    async def _relock(self, row: WorktreeRepo, session: WorktreeSession) -> bool:
        """Lock the worktree again if it is not, drop a stale index.lock; True if it did."""
        repository = await repository_store.get(self.db, row.repository_id)
        if repository is None:
            return False
        mirror = self.mirror_path(repository)
        changed = False
        async with self._lock(repository):
            entries = {entry.path: entry for entry in await list_worktrees(mirror)}
            entry = entries.get(Path(row.path))
            if entry is not None and not entry.locked:
                reason = f"biagent session {session.id} ({session.owner})"
                await run_git("worktree", "lock", "--reason", reason, row.path, cwd=mirror)
                changed = True
            git_dir = await run_git(
                "rev-parse", "--absolute-git-dir", cwd=Path(row.path), optional_locks=False
            )
            stale = Path(git_dir.stdout.strip()) / "index.lock"
            if stale.exists():
                stale.unlink()
                changed = True
        return changed


def _stamp(clock: Clock) -> str:
    return to_text(clock.now())


def _is_worktree(path: Path) -> bool:
    return (path / ".git").is_file()


def _remove_path(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
