"""The services a handler or an API route may use, built once by the app factory.

A service gets what it needs passed in (docs/design.md, Layers); this record is how the app factory
hands them around. It is built after every part it holds exists (web/composition.py) and never
changes afterwards. Features that are off (no JIRA configured, say) are None here. The GitHub App
is read through its connection (bot/github/connection.py) at each use: it may arrive while the
service runs (the manifest flow), and `github` is None until it does.
"""

from __future__ import annotations

from dataclasses import dataclass

from bot.agents.runner import AgentRunner
from bot.claims import WorkClaims
from bot.clock import Clock
from bot.config import Settings
from bot.events.bus import EventBus
from bot.github.app import GitHubApp
from bot.github.connection import GitHubConnection
from bot.jira.service import JiraService
from bot.pipelines.cycle_type_service import CycleTypes
from bot.pipelines.service import Pipelines
from bot.repositories import RepositoryRegistry
from bot.reviews.service import ReviewService
from bot.worktrees.manager import WorktreeManager
from storage.database import Database


@dataclass(frozen=True, slots=True)
class Services:
    settings: Settings
    db: Database
    bus: EventBus
    clock: Clock
    claims: WorkClaims
    github_connection: GitHubConnection | None = None
    agents: AgentRunner | None = None
    reviews: ReviewService | None = None  # review response, when the GitHub App is on
    worktrees: WorktreeManager | None = None
    repositories: RepositoryRegistry | None = None  # with the worktrees
    jira: JiraService | None = None
    cycle_types: CycleTypes | None = None  # the pipelines' recipes (docs/pipelines.md)
    pipelines: Pipelines | None = None  # ticket pipelines (bot/pipelines/service.py)

    @property
    def github(self) -> GitHubApp | None:
        """The GitHub App, when it is configured (now: it may be created while we run)."""
        return self.github_connection.app if self.github_connection is not None else None
