"""The optional services a route needs, each answered 503 when its feature is off.

Shared by the route modules (which do not import each other): a route asks here for the
service it calls and gets it typed, not None.
"""

from __future__ import annotations

from aiohttp import web

from bot.jira.service import JiraService
from bot.pipelines.cycle_type_service import CycleTypes
from bot.pipelines.service import Pipelines
from bot.repositories import RepositoryRegistry
from bot.worktrees.manager import WorktreeManager
from web.errors import ApiError
from web.keys import SERVICES


def worktrees_of(request: web.Request) -> WorktreeManager:
    manager = request.app[SERVICES].worktrees
    if manager is None:
        raise ApiError(503, "worktrees_off", "worktrees are not available")
    return manager


def repositories_of(request: web.Request) -> RepositoryRegistry:
    registry = request.app[SERVICES].repositories
    if registry is None:
        raise ApiError(503, "worktrees_off", "worktrees are not available")
    return registry


def jira_of(request: web.Request) -> JiraService:
    jira = request.app[SERVICES].jira
    if jira is None:
        raise ApiError(503, "jira_disabled", "JIRA is off: set JIRA_URL and JIRA_API_TOKEN")
    return jira


def cycle_types_of(request: web.Request) -> CycleTypes:
    found = request.app[SERVICES].cycle_types
    if found is None:
        raise ApiError(503, "feature_off", "cycle types are not available")
    return found


def pipelines_of(request: web.Request) -> Pipelines:
    found = request.app[SERVICES].pipelines
    if found is None:
        raise ApiError(503, "feature_off", "pipelines are not available")
    return found
