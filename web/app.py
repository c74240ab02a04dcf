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
from bot.agents.runner import AgentRunner, build_agent_runner
from bot.clock import Clock, SystemClock
from bot.config import Settings
from bot.dispatcher import Dispatcher
from bot.events.bus import EventBus
from bot.github.app import GitHubApp
from bot.jira.service import JiraService
from bot.reviews.agent_engine import build_agent_review_engine
from bot.reviews.engine import ReviewEngine
from bot.reviews.scheduler import ReviewScheduler
from bot.reviews.service import ReviewService
from bot.services import Services
from bot.worktrees import service as worktree_service
from storage import token_buffer
from storage.database import Database
from web import auth, status, webhooks_github, webhooks_jira, ws
from web.api import agents as agents_api
from web.api import deliveries as deliveries_api
from web.api import events as events_api
from web.api import pull_requests as pull_requests_api
from web.api import repositories as repositories_api
from web.api import tickets as tickets_api
from web.api import worktrees as worktrees_api
from web.errors import error_middleware
from web.keys import DISPATCHER, GENERATED_TOKEN, REVIEW_SCHEDULER, SERVICES, TOKEN_CHECK

log = logging.getLogger(__name__)

HERE = Path(__file__).parent
MAX_WEBHOOK_BYTES = 26 * 1024 * 1024  # GitHub caps payloads at 25 MB
PRUNE_EVERY_S = 600.0


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


async def _housekeeping(services: Services) -> None:
    while True:
        await services.clock.sleep(PRUNE_EVERY_S)
        try:
            await services.bus.prune(services.settings.events_kept)
        except Exception:
            log.exception("event pruning failed")
        try:
            await token_buffer.prune_expired(services.db, now=services.clock.now())
        except Exception:
            log.exception("token buffer pruning failed")


def _wire_review_engine(services: Services, override: ReviewEngine | None) -> None:
    """The engine that works review batches: the given one (tests), else the agent engine when
    the agents are configured too, else none (batches conclude skipped, check run neutral)."""
    assert services.reviews is not None and services.github is not None
    if override is not None:
        services.reviews.engine = override
    elif services.agents is not None and services.worktrees is not None:
        services.reviews.engine = build_agent_review_engine(
            db=services.db,
            agents=services.agents,
            worktrees=services.worktrees,
            github=services.github,
            github_client=services.reviews.client,
        )
        log.info("reviews: batches are worked by the review_response agent")
    else:
        log.warning("reviews: no engine (ANTHROPIC_API_KEY is not set): batches are skipped")


def create_app(
    settings: Settings,
    *,
    clock: Clock | None = None,
    review_engine: ReviewEngine | None = None,
) -> web.Application:
    """The application; `review_engine` replaces the agent engine that works review batches
    (tests pass a scripted one)."""
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
    app.router.add_routes(agents_api.routes)
    app.router.add_routes(pull_requests_api.routes)
    app.router.add_routes(repositories_api.routes)
    app.router.add_routes(worktrees_api.routes)
    app.router.add_routes(tickets_api.routes)
    app.router.add_static("/static", HERE / "static")
    app.cleanup_ctx.append(_lifecycle(settings, clock or SystemClock(), review_engine))
    return app


def _lifecycle(  # type: ignore[no-untyped-def]
    settings: Settings, clock: Clock, review_engine: ReviewEngine | None
):
    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        db = await Database.open(settings.database_url, synchronous=settings.database_synchronous)
        tasks: list[asyncio.Task[None]] = []
        jira: JiraService | None = None
        session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60))
        agents: AgentRunner | None = None
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
                    write_spacing_s=settings.github_write_spacing_seconds,
                )
                tasks.append(asyncio.create_task(github.keep_loading_identity()))
            if settings.anthropic_configured:
                agents = build_agent_runner(settings, db=db, bus=bus, clock=clock)
                await agents.start()
            services = Services(
                settings=settings, db=db, bus=bus, clock=clock, github=github, agents=agents
            )
            if settings.jira_enabled:
                jira = JiraService(settings=settings, db=db, bus=bus, clock=clock)
                services.jira = jira
            app[SERVICES] = services
            review_scheduler = None
            if github is not None:
                services.reviews = ReviewService(
                    settings=settings,
                    db=db,
                    bus=bus,
                    clock=clock,
                    github=github,
                )
                review_scheduler = ReviewScheduler(services.reviews)
                services.reviews.wake_scheduler = review_scheduler.wake
                app[REVIEW_SCHEDULER] = review_scheduler
            services.worktrees = worktree_service.build_manager(settings, db, bus, clock, github)
            await services.worktrees.reconcile()
            if services.reviews is not None:
                _wire_review_engine(services, review_engine)
            tasks.append(
                asyncio.create_task(
                    services.worktrees.run_sweeps(worktree_service.SWEEP_EVERY_S),
                    name="worktree-sweeps",
                )
            )
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
            if review_scheduler is not None:
                await review_scheduler.recover()
                tasks.append(asyncio.create_task(review_scheduler.run(), name="review-scheduler"))
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
            if agents is not None:
                await agents.close()
            if SERVICES in app and app[SERVICES].worktrees is not None:
                await app[SERVICES].worktrees.close()
            await session.close()
            await db.close()

    return lifecycle
