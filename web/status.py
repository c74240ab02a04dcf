"""GET /: the status page, a dashboard led by what needs a person (web/pages/dashboard.py),
with the current event id for a gap-free start; GET /dashboard/state: its changing part alone,
which the page fetches again when an event says something changed (web/static/status.js).
While no GitHub App is configured it offers its setup (web/setup_github.py)."""

from __future__ import annotations

from typing import Any

import aiohttp_jinja2
from aiohttp import web

from storage import deliveries, installations
from web import setup_github
from web.keys import SERVICES
from web.pages import dashboard

routes = web.RouteTableDef()


@routes.get("/")
@aiohttp_jinja2.template("status.html")
async def status_page(request: web.Request) -> dict[str, Any]:
    services = request.app[SERVICES]
    settings, github = services.settings, services.github
    identity = github.identity if github else None
    webhook_secret = (
        services.github_connection.webhook_secret if services.github_connection else None
    )
    return {
        "epoch": services.bus.epoch,
        "last_id": services.bus.last_id,
        "installations": await installations.list_all(services.db),
        "deliveries": await deliveries.list_recent(services.db, limit=30),
        "counts": await deliveries.count_by_status(services.db),
        **await dashboard.state_of(services),
        "github_setup": setup_github.offer(request),
        "features": [
            (
                "GitHub App",
                github is not None,
                identity.bot_login
                if identity
                else ("identity pending" if github else "not configured"),
            ),
            ("Webhooks", webhook_secret is not None, "/webhooks/github"),
            ("Anthropic", settings.anthropic_configured, settings.model),
            ("JIRA", settings.jira_enabled, settings.jira_url or "not configured"),
        ],
    }


@routes.get("/dashboard/state")
@aiohttp_jinja2.template("status_state.html")
async def dashboard_state(request: web.Request) -> dict[str, Any]:
    return await dashboard.state_of(request.app[SERVICES])
