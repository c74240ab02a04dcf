"""GET /metrics (Prometheus text, behind the API token) and GET /readyz (open, like /healthz).

`/healthz` says the process serves; `/readyz` says whether it can do its work: 200 when the
database answers a trivial query, 503 when it does not, and either way this instance's role
(bot/roles.py) and each integration's state (bot/readiness.py) so an operator sees what is
degraded or off. It names states only, never errors or hosts (nor so the instance's identity),
since it answers without a token. A worker serves these three routes alone. The metrics
themselves are built in bot/metrics.py from one registry per app (composition's `metrics`
context).
"""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web

from bot.readiness import IntegrationState, integrations
from storage import operations
from storage.database import DatabaseClosed, driver_errors
from storage.operations import JiraSyncState
from web.keys import METRICS, SERVICES

log = logging.getLogger(__name__)

routes = web.RouteTableDef()

READY_TIMEOUT_S = 2.0
_DATABASE_DOWN: tuple[type[Exception], ...] = (
    DatabaseClosed,
    *driver_errors(),
    TimeoutError,
    OSError,
    ValueError,
)


@routes.get("/metrics")
async def metrics(request: web.Request) -> web.Response:
    body, content_type = await request.app[METRICS].render(request.headers.get("Accept", ""))
    return web.Response(body=body, headers={"Content-Type": content_type})


async def _database_answers(request: web.Request) -> tuple[bool, list[JiraSyncState]]:
    """Whether the database answered in time, and the JIRA sync states it holds."""
    db = request.app[SERVICES].db
    try:
        async with asyncio.timeout(READY_TIMEOUT_S):
            if not await operations.ping(db):
                return False, []
            return True, await operations.jira_sync_states(db)
    except _DATABASE_DOWN as error:
        log.warning("readiness: the database does not answer (%s)", type(error).__name__)
        return False, []


@routes.get("/readyz")
async def readyz(request: web.Request) -> web.Response:
    answers, syncs = await _database_answers(request)
    found = integrations(request.app[SERVICES], syncs)
    settings = request.app[SERVICES].settings
    return web.json_response(
        {
            "status": "ready" if answers else "unavailable",
            "role": settings.role,
            "database": "ok" if answers else "unavailable",
            "integrations": {integration.name: integration.as_json() for integration in found},
            "degraded": [i.name for i in found if i.state is not IntegrationState.OK],
        },
        status=200 if answers else 503,
    )
