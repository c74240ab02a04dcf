"""WorktreeManager: an isolated git worktree per agent job, over a cached mirror per repository.

Layout under WORKTREE_ROOT (bot/worktrees/layout.py):

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
handed to git per command (bot/gitops/runner.py). Setup runs under bot/isolation/sandbox.py.

`WorktreeManager` is the one class the rest of biagent uses: a facade over collaborators that
each own their state and get what they need in their constructor (wired in `_build` below):

    mirrors.py         Mirrors: the bare mirror, the lock per repository, installation tokens
    views.py           SessionViews: reading sessions, the API's shape of one
    removal.py         Removal: a session's worktrees and branches removed
    quotas.py          Quotas: sizes and per-repository quotas (removes idle sessions)
    spares.py          SparePool: worktrees checked out ahead of time, refilled in the background
    scope.py           CommandScopes: what a command in a worktree gets (ports, caches, paths)
    setup_questions.py SetupQuestions: asking a person, waking the setups that wait
    setup_runner.py    SetupRunner: the plan and the sandboxed setup command
    checkout.py        WorktreeCheckout: one repository's worktree added to a session
    sessions.py        Sessions: creating, holding and releasing sessions
    pull_requests.py   PullRequestSessions: PR checkout, leased push, following a moved head
    sweeps.py          Sweeper: merged/closed PRs, idle sessions, orphans (one pass or a loop)
    forget.py          Forgetting: everything of a repository before it is unregistered
    reconcile.py       Reconciler: start-up repair after a crash
    records.py, states.py, events.py, options.py, layout.py: what they share
"""

from __future__ import annotations

import uuid
from collections.abc import Callable

from bot.clock import Clock
from bot.config import DEFAULT_SETTINGS
from bot.events.bus import EventBus
from bot.isolation.sandbox import Isolation
from bot.worktrees.checkout import PortBlocks, WorktreeCheckout
from bot.worktrees.cleanup import PullRequestLookup
from bot.worktrees.forget import Forgetting
from bot.worktrees.layout import WorktreeLayout
from bot.worktrees.mirrors import Mirrors
from bot.worktrees.options import WorktreeOptions
from bot.worktrees.pull_requests import PullRequestSessions
from bot.worktrees.quotas import Quotas
from bot.worktrees.reconcile import Reconciler
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
from bot.worktrees.removal import Removal
from bot.worktrees.scope import CommandScopes
from bot.worktrees.sessions import Sessions
from bot.worktrees.setup_detector import SetupDetector
from bot.worktrees.setup_questions import SetupQuestions
from bot.worktrees.setup_runner import SetupLimits, SetupRunner
from bot.worktrees.spares import SparePool
from bot.worktrees.sweeps import Sweeper
from bot.worktrees.views import SessionViews
from storage.database import Database

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
    "WorktreeOptions",
    "WorktreeSetupError",
    "branch_name",
]


def short_id() -> str:
    return uuid.uuid4().hex[:12]


class WorktreeManager:
    """Worktrees for agent jobs: sessions, pull requests, setup, spares, cleanup, start-up.

    Every public method is one collaborator's (listed in this module's docstring): the manager
    builds them and hands their methods out under the names callers use.
    """

    def __init__(
        self,
        *,
        db: Database,
        bus: EventBus,
        clock: Clock,
        options: WorktreeOptions,
        detector: SetupDetector | None = None,
        token_source: TokenSource | None = None,
        pull_request_state: PullRequestLookup | None = None,
        new_id: Callable[[], str] = short_id,
        instance_id: str = DEFAULT_SETTINGS.instance_id,
    ) -> None:
        """`instance_id`: whose disk WORKTREE_ROOT is (BIAGENT_INSTANCE_ID): the sessions it
        makes record it, and it works on its own alone (bot/worktrees/views.py)."""
        self.clock = clock
        self.instance_id = instance_id
        self.options = options
        self.detector = detector or SetupDetector()
        self.layout = layout = WorktreeLayout.under(options.root)
        self._build(db, bus, token_source, pull_request_state, new_id)
        self.ensure_mirror = self.mirrors.ensure_mirror
        self.get = self.views.get
        self.list_sessions = self.views.list_sessions
        self.session_json = self.views.session_json
        self.cleanup_session = self.removal.cleanup_session
        self.quota_of = self.quotas.quota_of
        self.measure = self.quotas.measure
        self.prepare_spares = self.spares.prepare_spares
        self.spares_ready = self.spares.spares_ready
        self.close = self.spares.close  # the refills are the only background work
        self.environment = self.scopes.environment
        self.sandbox_paths = self.scopes.sandbox_paths
        self.toolchain_paths = self.scopes.toolchain_paths
        self.command_sandbox = self.scopes.command_sandbox
        self.answer_setup = self.questions.answer_setup
        self.run_setup = self.setup.run_setup
        self.create_session = self.sessions.create_session
        self.hold = self.sessions.hold
        self.release = self.sessions.release
        self.checkout_pull_request = self.pull_requests.checkout_pull_request
        self.push = self.pull_requests.push
        self.follow_pull_request = self.pull_requests.follow_pull_request
        self.discard_changes = self.pull_requests.discard_changes
        self.attach_pull_request = self.pull_requests.attach_pull_request
        self.cleanup_for_pull_request = self.sweeper.cleanup_for_pull_request
        self.check_and_cleanup_merged = self.sweeper.check_and_cleanup_merged
        self.cleanup_idle = self.sweeper.cleanup_idle
        self.cleanup_orphans = self.sweeper.cleanup_orphans
        self.sweep = self.sweeper.sweep_once  # one pass, which the app's scheduler runs
        self.forget_repository = self.forgetting.forget_repository
        self.reconcile = self.reconciler.reconcile
        self.root = layout.root
        self.mirror_path = layout.mirror_path
        self.store_path = layout.store_path
        self.cache_path = layout.cache_path
        self.cache_dir = layout.cache_dir
        self.sessions_dir = layout.sessions_dir
        self.spares_dir = layout.spares_dir

    def _build(
        self,
        db: Database,
        bus: EventBus,
        token_source: TokenSource | None,
        pull_request_state: PullRequestLookup | None,
        new_id: Callable[[], str],
    ) -> None:
        clock, options, layout = self.clock, self.options, self.layout
        self.mirrors = mirrors = Mirrors(db, layout, token_source)
        self.views = views = SessionViews(
            db, port_block=options.port_block, instance_id=self.instance_id
        )
        self.removal = removal = Removal(db, bus, clock, layout, mirrors)
        self.quotas = quotas = Quotas(
            db, clock, views, removal, default_quota_bytes=options.quota_bytes
        )
        self.spares = spares = SparePool(
            db, layout, mirrors, per_repository=options.spares_per_repository, new_id=new_id
        )
        self.scopes = CommandScopes(
            layout, port_block=options.port_block, hidden_paths=options.hidden_paths
        )
        self.questions = SetupQuestions(
            db, bus, clock, input_timeout_s=options.input_timeout_s, new_id=new_id
        )
        self.setup = SetupRunner(
            db, bus, clock, layout=layout, views=views, detector=self.detector,
            questions=self.questions, scopes=self.scopes, spares=spares,
            limits=SetupLimits(
                options.setup_timeout_s, options.output_cap_bytes, options.isolation
            ),
        )  # fmt: skip
        checkout = WorktreeCheckout(
            db, bus, clock, layout=layout, mirrors=mirrors, spares=spares,
            ports=PortBlocks(options.port_first, options.port_block),
        )  # fmt: skip
        self.sessions = sessions = Sessions(
            db, bus, clock, views=views, quotas=quotas, checkout=checkout, setup=self.setup,
            spares=spares, removal=removal, new_id=new_id,
        )  # fmt: skip
        self.pull_requests = PullRequestSessions(
            db, clock, views=views, mirrors=mirrors, sessions=sessions, checkout=checkout
        )
        self.sweeper = sweeper = Sweeper(
            db, clock, layout=layout, views=views, removal=removal, quotas=quotas,
            pull_request_state=pull_request_state, idle_ttl_s=options.idle_ttl_s,
        )  # fmt: skip
        self.forgetting = Forgetting(
            layout=layout, views=views, removal=removal, spares=spares, mirrors=mirrors
        )
        self.reconciler = Reconciler(
            db, clock, layout=layout, views=views, mirrors=mirrors, removal=removal,
            spares=spares, sweeper=sweeper,
        )  # fmt: skip

    @property
    def default_idle_ttl_s(self) -> float:
        return self.options.idle_ttl_s

    @property
    def isolation(self) -> Isolation:
        return self.options.isolation
