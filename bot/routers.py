"""The one place where the concerns' webhook routers are merged into the dispatcher's list.

Each concern keeps its own gidgethub Router in its package; the dispatcher runs them one by one
and records each one's result on its own (STYLE.md: a broken JIRA hook cannot stop a review
reply). A new concern adds one line here.
"""

from __future__ import annotations

from bot.concerns import Concern
from bot.github import installations
from bot.jira import webhooks as jira_webhooks
from bot.pipelines import on_github as pipeline_pull_requests
from bot.pipelines import triggers as pipeline_triggers
from bot.reviews import router as reviews
from bot.worktrees import webhooks as worktree_webhooks


def concerns() -> list[Concern]:
    return [
        Concern("installations", installations.router),
        Concern("reviews", reviews.router),
        Concern("worktrees", worktree_webhooks.router),
        Concern("pipeline_pull_requests", pipeline_pull_requests.router),
        Concern("jira", jira_webhooks.router, sources=frozenset({"jira"})),
        Concern("pipeline_triggers", pipeline_triggers.router, sources=frozenset({"jira"})),
    ]
