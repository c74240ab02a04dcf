"""The app factory: the one place where everything is wired (DESIGN.md, Layers).

`create_app(settings)` returns an aiohttp Application whose cleanup context opens the database,
applies migrations, starts the event bus, prepares the API token, builds the GitHub App client,
and runs the dispatcher and housekeeping loops; on shutdown it stops them and closes everything.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import aiohttp_jinja2
import jinja2
from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from bot import api_token, routers
from bot.clock import Clock, SystemClock
from bot.config import Settings
from bot.dispatcher import Dispatcher
from bot.events.bus import EventBus
from bot.github.app import GitHubApp
from bot.jira.service import JiraService
from bot.services import Services
from storage.database import Database
from web import auth, status, webhooks_github, webhooks_jira, ws
from web.api import deliveries as deliveries_api
from web.api import events as events_api
from web.api import tickets as tickets_api
from web.errors import error_middleware
from web.keys import DISPATCHER, GENERATED_TOKEN, SERVICES, TOKEN_CHECK

log = logging.getLogger(__name__)

HERE = Path(__file__).parent
MAX_WEBHOOK_BYTES = 26 * 1024 * 1024  # GitHub caps payloads at 25 MB
PRUNE_EVERY_S = 600.0


class AccessLogger(AbstractAccessLogger):
    """Method, path (never the query string: it may carry a token), status and time."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        self.logger.info(
            "%s %s %s %.1fms", request.method, request.path, response.status, time * 1000
        )


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def _housekeeping(services: Services) -> None:
    while True:
        await services.clock.sleep(PRUNE_EVERY_S)
        try:
            await services.bus.prune(services.settings.events_kept)
        except Exception:
            log.exception("event pruning failed")


def create_app(settings: Settings, *, clock: Clock | None = None) -> web.Application:
    app = web.Application(
        middlewares=[error_middleware, auth.auth_middleware], client_max_size=MAX_WEBHOOK_BYTES
    )
    aiohttp_jinja2.setup(
        app,
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=jinja2.select_autoescape(["html"]),
    )
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/login", auth.login)
    app.router.add_routes(webhooks_github.routes)
    app.router.add_routes(webhooks_jira.routes)
    app.router.add_routes(ws.routes)
    app.router.add_routes(status.routes)
    app.router.add_routes(deliveries_api.routes)
    app.router.add_routes(events_api.routes)
    app.router.add_routes(tickets_api.routes)
    app.router.add_static("/static", HERE / "static")
    app.cleanup_ctx.append(_lifecycle(settings, clock or SystemClock()))
    return app


def _lifecycle(settings: Settings, clock: Clock):  # type: ignore[no-untyped-def]
    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        db = await Database.open(settings.database_url, synchronous=settings.database_synchronous)
        tasks: list[asyncio.Task[None]] = []
        jira: JiraService | None = None
        session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60))
        try:
            version = await db.migrate()
            log.info("database ready at schema version %d", version)
            bus = EventBus(db, clock)
            await bus.start()
            token_check, generated = await api_token.prepare(db, settings)
            app[TOKEN_CHECK] = token_check
            if generated is not None:
                app[GENERATED_TOKEN] = generated.reveal()
            github = None
            if settings.github_enabled:
                assert settings.github_app_id and settings.github_private_key
                github = GitHubApp(
                    app_id=settings.github_app_id,
                    private_key=settings.github_private_key,
                    api_url=settings.github_api_url,
                    session=session,
                    clock=clock,
                )
                tasks.append(asyncio.create_task(github.keep_loading_identity()))
            services = Services(settings=settings, db=db, bus=bus, clock=clock, github=github)
            if settings.jira_enabled:
                jira = JiraService(settings=settings, db=db, bus=bus, clock=clock)
                services.jira = jira
            app[SERVICES] = services
            dispatcher = Dispatcher(
                services,
                routers.concerns(),
                concurrency=settings.dispatch_concurrency,
                max_attempts=settings.delivery_max_attempts,
            )
            app[DISPATCHER] = dispatcher
            await dispatcher.recover()
            tasks.append(asyncio.create_task(dispatcher.run(), name="dispatcher"))
            tasks.append(asyncio.create_task(_housekeeping(services), name="housekeeping"))
            if jira is not None:
                await jira.start(sync_at_start=settings.jira_sync_at_start)
            yield
        finally:
            if jira is not None:
                await jira.close()
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            await session.close()
            await db.close()

    return lifecycle
