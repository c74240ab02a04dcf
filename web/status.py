"""GET /: the status page (aiohttp-jinja2), with the current event id for a gap-free start."""

from __future__ import annotations

from typing import Any

import aiohttp_jinja2
from aiohttp import web

from bot.reviews import overview
from storage import deliveries, installations
from web.keys import SERVICES

routes = web.RouteTableDef()


@routes.get("/")
@aiohttp_jinja2.template("status.html")
async def status_page(request: web.Request) -> dict[str, Any]:
    services = request.app[SERVICES]
    settings = services.settings
    identity = services.github.identity if services.github else None
    return {
        "epoch": services.bus.epoch,
        "last_id": services.bus.last_id,
        "installations": await installations.list_all(services.db),
        "deliveries": await deliveries.list_recent(services.db, limit=30),
        "counts": await deliveries.count_by_status(services.db),
        "pull_requests": await overview.list_pull_requests(
            services.db, services.clock.now(), open_only=True
        ),
        "features": [
            (
                "GitHub App",
                settings.github_enabled,
                identity.bot_login
                if identity
                else ("identity pending" if settings.github_enabled else "not configured"),
            ),
            ("Webhooks", settings.github_webhook_secret is not None, "/webhooks/github"),
            ("Anthropic", settings.anthropic_configured, settings.model),
            ("JIRA", settings.jira_enabled, settings.jira_url or "not configured"),
        ],
    }
