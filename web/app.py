"""The app factory: the route table and the resources to open (docs/design.md, Layers).

`create_app(settings)` returns an aiohttp Application: the middlewares, the route table (one
`RouteTableDef` per web module) and the cleanup contexts of web/composition.py, which open each
resource at start-up and close them backwards on shutdown.
"""

from __future__ import annotations

import logging
from pathlib import Path

import aiohttp_jinja2
import jinja2
from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from bot.clock import Clock, SystemClock
from bot.config import ConfigError, Settings
from bot.reviews.engine import ReviewEngine
from web import (
    auth,
    composition,
    forwarded,
    headers,
    metrics,
    pipeline_pages,
    setup_github,
    status,
    webhooks_github,
    webhooks_jira,
    ws,
)
from web.api import agents as agents_api
from web.api import cycle_types as cycle_types_api
from web.api import deliveries as deliveries_api
from web.api import events as events_api
from web.api import pipelines as pipelines_api
from web.api import pull_requests as pull_requests_api
from web.api import repositories as repositories_api
from web.api import sessions as sessions_api
from web.api import tickets as tickets_api
from web.api import worktrees as worktrees_api
from web.errors import error_middleware
from web.keys import CLOCK, READ_BUDGET, REVIEW_ENGINE, SETTINGS
from web.pages import costs_page, formats, pull_request_page, ticket_page, worktrees_page
from web.webhook_body import MIB, ReadBudget

log = logging.getLogger(__name__)

HERE = Path(__file__).parent
MAX_WEBHOOK_BYTES = 26 * 1024 * 1024  # GitHub caps payloads at 25 MB


class AccessLogger(AbstractAccessLogger):
    """Method, path (never the query string: it may carry a token), status and time.

    An accepted webhook (202) is logged at DEBUG: the delivery log already records each one
    (`GET /api/deliveries`), and a busy organisation's stream of them would bury everything else
    (bench/webhooks.py: formatting and writing the line was a tenth of the intake's time).
    Refused webhooks and every other request stay at INFO.
    """

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        level = logging.INFO
        if response.status == 202 and request.path.startswith("/webhooks/"):
            level = logging.DEBUG
        if self.logger.isEnabledFor(level):
            self.logger.log(
                level, "%s %s %s %.1fms", request.method, request.path, response.status, time * 1000
            )

    @property
    def enabled(self) -> bool:
        return self.logger.isEnabledFor(logging.INFO)  # at WARNING and above it logs nothing


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


def create_app(
    settings: Settings,
    *,
    clock: Clock | None = None,
    review_engine: ReviewEngine | None = None,
) -> web.Application:
    """The application; `review_engine` replaces the agent engine that works review batches
    (tests pass a scripted one). A role the database cannot hold (a split on SQLite) is a
    ConfigError, as `load_settings` reports it from the environment."""
    problem = settings.role_problem()
    if problem is not None:
        raise ConfigError([f"BIAGENT_ROLE: {problem}"])
    app = web.Application(
        middlewares=[error_middleware, forwarded.forwarded_middleware, auth.auth_middleware],
        client_max_size=MAX_WEBHOOK_BYTES,
    )
    app.on_response_prepare.append(headers.add_security_headers)
    templates = aiohttp_jinja2.setup(
        app,
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=jinja2.select_autoescape(["html"]),
    )
    formats.install(templates, app)
    app.router.add_get("/healthz", healthz)
    app.router.add_routes(metrics.routes)
    if settings.role.serves_requests:
        _add_request_routes(app)
    app[SETTINGS] = settings
    app[CLOCK] = clock or SystemClock()
    app[READ_BUDGET] = ReadBudget(settings.webhook_read_budget_mb * MIB)
    if review_engine is not None:
        app[REVIEW_ENGINE] = review_engine
    app.cleanup_ctx.extend(composition.CONTEXTS)
    return app


def _add_request_routes(app: web.Application) -> None:
    """What a web instance (or the one process) serves besides the probes: webhooks, the
    pages, the API and the WebSocket. A worker serves the probes alone (bot/roles.py)."""
    app.router.add_get("/login", auth.login)
    app.router.add_routes(webhooks_github.routes)
    app.router.add_routes(webhooks_jira.routes)
    app.router.add_routes(ws.routes)
    app.router.add_routes(status.routes)
    app.router.add_routes(setup_github.routes)
    app.router.add_routes(pipeline_pages.routes)
    app.router.add_routes(pull_request_page.routes)
    app.router.add_routes(ticket_page.routes)
    app.router.add_routes(worktrees_page.routes)
    app.router.add_routes(costs_page.routes)
    app.router.add_routes(deliveries_api.routes)
    app.router.add_routes(events_api.routes)
    app.router.add_routes(agents_api.routes)
    app.router.add_routes(pull_requests_api.routes)
    app.router.add_routes(repositories_api.routes)
    app.router.add_routes(cycle_types_api.routes)
    app.router.add_routes(pipelines_api.routes)
    app.router.add_routes(worktrees_api.routes)
    app.router.add_routes(tickets_api.routes)
    app.router.add_routes(sessions_api.routes)
    app.router.add_static("/static", HERE / "static")
