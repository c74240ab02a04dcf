"""What callers of the WorktreeManager get back and what they catch: sessions, push and
follow results, the reconciliation report, the errors, and the branch naming rule.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from bot.clock import Clock
from bot.config import Secret
from bot.worktrees.states import SessionStatus
from storage.repositories import Repository
from storage.timestamps import to_text
from storage.worktrees import WorktreeRepo, WorktreeSession

BRANCH_PREFIX = "biagent/"

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
    def status(self) -> SessionStatus:
        return SessionStatus(self.session.status)

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


def branch_name(owner: str) -> str:
    """`biagent/<owner>` with anything git would refuse in a ref name replaced."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "-", owner).strip(".-") or "job"
    cleaned = re.sub(r"\.{2,}", ".", cleaned)
    if cleaned.endswith(".lock"):
        cleaned = cleaned[: -len(".lock")] + "-lock"
    return BRANCH_PREFIX + cleaned


def stamp(clock: Clock) -> str:
    """The clock's now as stored text (a measurement's time)."""
    return to_text(clock.now())


def lock_reason(session: WorktreeSession) -> str:
    """What `git worktree lock --reason` records for a session's worktree."""
    return f"biagent session {session.id} ({session.owner})"
