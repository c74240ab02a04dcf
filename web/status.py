"""GET /: the status page (aiohttp-jinja2), with the current event id for a gap-free start, and
the GitHub App setup offer while no App is configured (web/setup_github.py)."""

from __future__ import annotations

from typing import Any

import aiohttp_jinja2
from aiohttp import web

from bot.reviews import overview
from storage import deliveries, installations
from web import setup_github
from web.keys import SERVICES

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
        "pull_requests": await overview.list_pull_requests(
            services.db, services.clock.now(), open_only=True
        ),
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
