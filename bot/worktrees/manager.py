"""WorktreeManager: an isolated git worktree per agent job, over a cached mirror per repository.

Layout under WORKTREE_ROOT:

    mirrors/<owner>__<name>.git     bare mirror, fetched incrementally (remote branches live in
                                    refs/remotes/origin/*, so our own branches are never pruned)
    sessions/<session>/<owner>__<name>   one worktree per repository of a session
    store/<owner>__<name>/          gitignored files (.env ...) copied into each new worktree
    cache/<repository id>/{uv,pip,npm,pnpm,yarn,go,cargo}   package caches of one repository,
                                    shared by its worktrees; written by its setup only
    spares/<owner>__<name>/<id>     worktrees checked out ahead of time (WORKTREE_SPARES)

A session is one job (a ticket's pipeline or a PR review) and holds a worktree of each of its
repositories, all on the branch `biagent/<owner>`. The row of a worktree is written before
`git worktree add` and the worktree is locked (`git worktree lock --reason`) from its creation
to its cleanup, so start-up reconciliation (`reconcile`) can tell a half-created or abandoned
worktree from a live one and repair the difference. Git operations on one mirror are serialized
by a lock per repository; different repositories proceed in parallel. The installation token is
handed to git per command (bot/worktrees/git.py). Setup runs under bot/sandbox.py.

`WorktreeManager` is the one class the rest of biagent uses; it is put together from parts,
one module each, every part building on those it needs:

    core.py           settings, layout, locks, events, tokens, reading sessions
    mirrors.py        the bare mirror per repository
    removal.py        removing a session's worktrees and branches
    spares.py         worktrees checked out ahead of time
    scope.py          the sandbox scope of a worktree (ports, caches, paths)
    setup_runner.py   setup: plan, questions, the sandboxed command
    quotas.py         sizes and per-repository quotas
    sessions.py       creating, holding and showing sessions
    pull_requests.py  PR checkout, push with a lease, following a moved head
    sweeps.py         merged/closed PRs, idle sessions, orphans, forgetting a repository
    reconcile.py      start-up reconciliation
    records.py        what callers get back and catch
"""

from __future__ import annotations

from bot.worktrees.pull_requests import PullRequests
from bot.worktrees.reconcile import Reconciliation
from bot.worktrees.records import (
    BRANCH_PREFIX,
    FollowResult,
    PushRejected,
    PushResult,
    QuotaExceeded,
    ReconcileReport,
    SessionView,
    TokenSource,
    WorktreeBusy,
    WorktreeError,
    WorktreeSetupError,
    branch_name,
)

__all__ = [
    "BRANCH_PREFIX",
    "FollowResult",
    "PushRejected",
    "PushResult",
    "QuotaExceeded",
    "ReconcileReport",
    "SessionView",
    "TokenSource",
    "WorktreeBusy",
    "WorktreeError",
    "WorktreeManager",
    "WorktreeSetupError",
    "branch_name",
]


class WorktreeManager(PullRequests, Reconciliation):
    """Worktrees for agent jobs: sessions, pull requests, setup, spares, cleanup, start-up."""
