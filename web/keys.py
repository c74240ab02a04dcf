"""Typed application state (aiohttp AppKey), shared by the web modules.

The configuration `create_app` is given comes first; then one key per resource, each stored by
the cleanup context that opens it (web/composition.py). A feature that is off stores nothing:
read its key with `app.get(KEY)`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from bot.agents.runner import AgentRunner
from bot.agents.token_relay import TokenRelay
from bot.api_token import TokenCheck
from bot.claims import WorkClaims
from bot.clock import Clock
from bot.config import Settings
from bot.dispatcher import Dispatcher
from bot.events.bus import EventBus
from bot.github.connection import GitHubConnection
from bot.github.setup import ManifestSetup
from bot.intake import DeliveryIntake
from bot.jira.service import JiraService
from bot.metrics import OperatorMetrics
from bot.pipelines.service import Pipelines
from bot.repositories import RepositoryRegistry
from bot.reviews.engine import ReviewEngine
from bot.reviews.scheduler import ReviewScheduler
from bot.reviews.service import ReviewService
from bot.scheduling import Scheduler
from bot.services import Services
from bot.sessions.service import Sessions
from bot.worktrees.manager import WorktreeManager
from storage.database import Database

if TYPE_CHECKING:
    from web.webhook_body import ReadBudget

# Given to create_app.
SETTINGS = web.AppKey("settings", Settings)
CLOCK: web.AppKey[Clock] = web.AppKey("clock")
REVIEW_ENGINE: web.AppKey[ReviewEngine] = web.AppKey("review_engine")  # a test's, when given
READ_BUDGET: web.AppKey[ReadBudget] = web.AppKey("read_budget")  # made of the settings

# Stored by the cleanup contexts, in start-up order.
DB = web.AppKey("db", Database)
CLAIMS = web.AppKey("claims", WorkClaims)  # this instance's identity and leases
TOKEN_CHECK = web.AppKey("token_check", TokenCheck)
GENERATED_TOKEN = web.AppKey("generated_token", str)
BUS = web.AppKey("bus", EventBus)
TOKEN_RELAY = web.AppKey("token_relay", TokenRelay)  # shared database only
SCHEDULER = web.AppKey("scheduler", Scheduler)
GITHUB_CONNECTION = web.AppKey("github_connection", GitHubConnection)  # the App, once there
GITHUB_SETUP = web.AppKey("github_setup", ManifestSetup)  # the manifest flow
WORKTREES = web.AppKey("worktrees", WorktreeManager)
REPOSITORIES = web.AppKey("repositories", RepositoryRegistry)
AGENTS = web.AppKey("agents", AgentRunner)
REVIEWS = web.AppKey("reviews", ReviewService)
REVIEW_SCHEDULER = web.AppKey("review_scheduler", ReviewScheduler)
JIRA = web.AppKey("jira", JiraService)
PIPELINES = web.AppKey("pipelines", Pipelines)
SERVICES = web.AppKey("services", Services)
SESSIONS = web.AppKey("sessions", Sessions)
METRICS = web.AppKey("metrics", OperatorMetrics)
DISPATCHER = web.AppKey("dispatcher", Dispatcher)
INTAKE = web.AppKey("intake", DeliveryIntake)
