"""GET /tickets/{key}: one ticket of the JIRA mirror, and the pipelines made of it.

The page shows the ticket's fields, description and comments, its links, parent and sub-tasks
(bot/jira/related.py, as `GET /api/tickets/{key}/related`), its attachments (downloaded through
`/api/tickets/{key}/attachments/{id}`), the repositories it is linked to, its pipelines, and a
form that starts a pipeline (`POST /api/pipelines`, then the pipeline's page). Ticket text is
whatever someone typed into JIRA: escaped everywhere, and the only link made of JIRA's own
address is the configured `JIRA_URL`.
"""

from __future__ import annotations

from typing import Any

import aiohttp_jinja2
from aiohttp import web

from bot.jira.related import related_of
from bot.pipelines.views import summary_of
from bot.services import Services
from storage import pipelines, repositories, tickets
from web.keys import SERVICES

routes = web.RouteTableDef()

KEY_PATTERN = r"[A-Za-z][A-Za-z0-9_]*-[0-9]+"


def jira_address(services: Services, key: str) -> str | None:
    """The ticket on JIRA itself, when JIRA is configured."""
    base = services.settings.jira_url
    return f"{base.rstrip('/')}/browse/{key}" if base else None


async def page_of(services: Services, key: str) -> dict[str, Any] | None:
    """What ticket.html shows; None when the mirror has no such ticket."""
    db = services.db
    ticket = await tickets.get_ticket(db, key)
    if ticket is None:
        return None
    found = await pipelines.list_pipelines(db, ticket_key=ticket.key, limit=100)
    cycle_types = [] if services.cycle_types is None else await services.cycle_types.list()
    return {
        "ticket": ticket,
        "related": await related_of(db, ticket),
        "attachments": await tickets.attachments_of(db, ticket.id),
        "repositories": await repositories.for_ticket(db, ticket.key),
        "pipelines": [summary_of(pipeline) for pipeline in found],
        "cycle_types": [cycle_type.name for cycle_type in cycle_types],
        "pipelines_enabled": services.pipelines is not None,
        "jira_address": jira_address(services, ticket.key),
    }


@routes.get(f"/tickets/{{key:{KEY_PATTERN}}}")
async def ticket_page(request: web.Request) -> web.Response:
    key = request.match_info["key"].upper()
    context = await page_of(request.app[SERVICES], key)
    if context is None:
        return aiohttp_jinja2.render_template(
            "missing.html",
            request,
            {"what": f"ticket {key} in the mirror", "back": "/", "back_text": "the dashboard"},
            status=404,
        )
    return aiohttp_jinja2.render_template("ticket.html", request, context)
