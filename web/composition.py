"""The composition root: one cleanup context per resource, in start-up order (docs/architecture.md).

`CONTEXTS` is what `create_app` appends to `app.cleanup_ctx`. Each context opens one resource
from what the earlier ones stored, stores it under its own `AppKey` (web/keys.py), and closes
it after everything opened later is closed: aiohttp runs the contexts in order at start-up and
backwards at shutdown, so the teardown order follows from this list. A feature that is off
stores nothing, and the contexts that need it see `app.get(KEY)` as None.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable

import aiohttp
from aiohttp import web

from bot import api_token
from bot.agents.definitions import AgentConfigError, load_agents_config
from bot.agents.runner import build_agent_runner
from bot.agents.token_relay import TokenRelay
from bot.agents.tokens import mark_cut_streams
from bot.agents.tools import BUILTIN_TOOLS, CLARIFICATION_TOOL, REPORT_TOOL
from bot.claims import WorkClaims
from bot.events.bus import EventBus
from bot.github.connection import GitHubConnection
from bot.github.credentials import credentials_path, starting_credentials
from bot.github.setup import ManifestSetup
from bot.jira.service import JiraService
from bot.metrics import LOOP_LAG_EVERY_S, LoopLagProbe, OperatorMetrics
from bot.pipelines.adoption import PipelineAdoption
from bot.pipelines.agent_tools import PIPELINE_TOOL_NAMES
from bot.pipelines.cycle_type_service import CycleTypes
from bot.pipelines.service import build_pipelines
from bot.repositories import RepositoryRegistry
from bot.reviews.agent_engine import build_agent_review_engine
from bot.reviews.engine import ReviewEngine
from bot.reviews.scheduler import ReviewScheduler
from bot.reviews.service import Doorbell, ReviewService
from bot.scheduling import Scheduler
from bot.services import Services
from bot.sessions.service import build_sessions
from bot.worktrees import service as worktree_service
from storage.database import Database
from web.keys import (
    AGENTS,
    BUS,
    CLAIMS,
    CLOCK,
    DB,
    GENERATED_TOKEN,
    GITHUB_CONNECTION,
    GITHUB_SETUP,
    JIRA,
    METRICS,
    PIPELINES,
    REPOSITORIES,
    REVIEW_ENGINE,
    REVIEW_SCHEDULER,
    REVIEWS,
    SCHEDULER,
    SERVICES,
    SESSIONS,
    SETTINGS,
    TOKEN_CHECK,
    TOKEN_RELAY,
    WORKTREES,
)
from web.work_contexts import (
    dispatcher,
    housekeeping,
    idle_poll_s,
    jira_sync,
    review_batches,
    stop_at_shutdown,
)

log = logging.getLogger(__name__)

Context = Callable[[web.Application], AsyncIterator[None]]

SWEEPS_JOB = "worktree-sweeps"
LOOP_LAG_JOB = "event-loop-lag"


async def database(app: web.Application) -> AsyncIterator[None]:
    """DB: the database, migrated to the newest schema."""
    settings = app[SETTINGS]
    db = await Database.open(settings.database_url, **settings.database_options())
    try:
        version = await db.migrate()
        log.info("database ready at schema version %d", version)
        app[DB] = db
        yield
    finally:
        await db.close()


async def work_claims(app: web.Application) -> AsyncIterator[None]:
    """CLAIMS: this instance's identity (BIAGENT_INSTANCE_ID, else generated now) and the
    heartbeat that renews the leases on the work it claims, until everything that works
    claimed rows has stopped (the contexts opened later close first)."""
    settings = app[SETTINGS]
    claims = WorkClaims(
        db=app[DB],
        clock=app[CLOCK],
        instance=settings.instance_id,
        lease_s=settings.work_lease_seconds,
    )
    await claims.may_claim()
    log.info("instance %s, work leases of %gs", claims.instance, claims.lease_s)
    app[CLAIMS] = claims
    task = asyncio.create_task(claims.run(), name="work-lease-heartbeat")
    try:
        yield
    finally:
        await stop_at_shutdown(task)


async def api_token_check(app: web.Application) -> AsyncIterator[None]:
    """TOKEN_CHECK, and GENERATED_TOKEN when the token was made just now (printed once)."""
    token_check, generated = await api_token.prepare(app[DB], app[SETTINGS])
    app[TOKEN_CHECK] = token_check
    if generated is not None:
        app[GENERATED_TOKEN] = generated.reveal()
    yield


async def event_bus(app: web.Application) -> AsyncIterator[None]:
    """BUS: the event bus, its epoch and last id read back from the log; on a shared database
    it follows the log (other instances' events) until the app stops."""
    bus = EventBus(app[DB], app[CLOCK])
    await bus.start()
    app[BUS] = bus
    try:
        yield
    finally:
        await bus.stop()


async def token_relay(app: web.Application) -> AsyncIterator[None]:
    """TOKEN_RELAY (shared database only): other instances' live token frames, relayed to this
    one's subscribers until the app stops."""
    if not app[DB].shared:
        yield
        return
    relay = TokenRelay(app[DB], app[BUS], app[BUS].follow_clock)
    app[TOKEN_RELAY] = relay
    task = asyncio.create_task(relay.run(), name="token-relay")
    try:
        yield
    finally:
        await stop_at_shutdown(task)


async def scheduler(app: web.Application) -> AsyncIterator[None]:
    """SCHEDULER: the periodic jobs; each context that adds one removes it when it closes."""
    periodic = Scheduler(app[CLOCK], exclusive=app[DB].exclusive)
    app[SCHEDULER] = periodic
    try:
        yield
    finally:
        await periodic.stop()


async def sessions(app: web.Application) -> AsyncIterator[None]:
    """SESSIONS: the browser sessions of the API token; their offline recorder catches up on
    the log (what a stop left unrecorded), then records as events are published. Opened early
    and so closed late: what the later contexts publish while they stop is recorded too."""
    built = build_sessions(
        app[SETTINGS],
        db=app[DB],
        bus=app[BUS],
        clock=app[CLOCK],
        token_digest=app[TOKEN_CHECK].expected_digest,
    )
    await built.recorder.start()
    task = asyncio.create_task(built.recorder.run(), name="offline-recorder")
    app[SESSIONS] = built
    try:
        yield
    finally:
        await stop_at_shutdown(task)
        built.recorder.stop()


async def github_app(app: web.Application) -> AsyncIterator[None]:
    """GITHUB_CONNECTION: the GitHub App's connection on one HTTP session, connected at once when
    the environment or the saved credentials name the App (its identity, GET /app, loads in the
    background, retried until GitHub answers), else later by the manifest flow."""
    settings = app[SETTINGS]
    starting = starting_credentials(settings, credentials_path(settings))
    for line in starting.warnings:
        log.warning("GitHub App: %s", line)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
        connection = GitHubConnection(
            api_url=settings.github_api_url,
            session=session,
            clock=app[CLOCK],
            write_spacing_s=settings.github_write_spacing_seconds,
            webhook_secret=starting.webhook_secret,
        )
        if starting.app is not None and starting.origin is not None:
            connection.connect(
                starting.app, webhook_secret=starting.webhook_secret, origin=starting.origin
            )
        app[GITHUB_CONNECTION] = connection
        app[GITHUB_SETUP] = ManifestSetup(
            connection,
            credentials_path(settings),
            app[CLOCK],
            saved_problem=starting.problem,
            environment_secret=settings.github_webhook_secret is not None,
        )
        try:
            yield
        finally:
            await connection.close()


async def worktrees(app: web.Application) -> AsyncIterator[None]:
    """WORKTREES and REPOSITORIES: the manager, reconciled with the disk before its sweeps
    are scheduled; the registry that writes repository records. Where jobs run (not on a web
    instance), each instance sweeps its own disk: the job's lock is named after the instance."""
    settings, clock, db = app[SETTINGS], app[CLOCK], app[DB]
    manager = worktree_service.build_manager(settings, db, app[BUS], clock, app[GITHUB_CONNECTION])
    try:
        if settings.role.works:
            await manager.reconcile()
        app[WORKTREES] = manager
        app[REPOSITORIES] = RepositoryRegistry(db=db, clock=clock, worktrees=manager)
        if settings.role.works:
            app[SCHEDULER].add(
                SWEEPS_JOB,
                manager.sweep,
                every_s=worktree_service.SWEEP_EVERY_S,
                lock_name=f"{SWEEPS_JOB}:{settings.instance_id}",
            )
        yield
    finally:
        await app[SCHEDULER].remove(SWEEPS_JOB)
        await manager.close()


async def agents(app: web.Application) -> AsyncIterator[None]:
    """AGENTS (when ANTHROPIC_API_KEY is set, and not on a web instance): the agent runner.
    Before it, whether or not agents are configured now, streams a stop cut are marked
    interrupted."""
    settings = app[SETTINGS]
    if not settings.role.works:
        yield
        return
    await mark_cut_streams(app[DB], app[CLOCK])
    if not settings.anthropic_configured:
        yield
        return
    runner = build_agent_runner(settings, db=app[DB], bus=app[BUS], clock=app[CLOCK])
    try:
        await runner.start()  # inside: a start that fails partway still closes what it opened
        app[AGENTS] = runner
        yield
    finally:
        await runner.close()


def _review_engine(app: web.Application, service: ReviewService) -> ReviewEngine | None:
    """The engine that works review batches: the one given to create_app (tests), else the
    agent engine when the agents are configured too, else none (batches conclude skipped)."""
    given = app.get(REVIEW_ENGINE)
    if given is not None:
        return given
    runner = app.get(AGENTS)
    if runner is None:
        log.warning("reviews: no engine (ANTHROPIC_API_KEY is not set): batches are skipped")
        return None
    log.info("reviews: batches are worked by the review_response agent")
    return build_agent_review_engine(
        db=app[DB],
        agents=runner,
        worktrees=app[WORKTREES],
        github=service.connection,
        github_client=service.client,
    )


async def reviews(app: web.Application) -> AsyncIterator[None]:
    """REVIEWS and REVIEW_SCHEDULER: the review response service, its engine chosen first, and
    the debounce scheduler it wakes through a doorbell. Both read the GitHub App through its
    connection; the scheduler starts working once the App is there (review_batches)."""
    settings, clock = app[SETTINGS], app[CLOCK]
    doorbell = Doorbell()
    service = ReviewService(
        settings=settings,
        db=app[DB],
        bus=app[BUS],
        clock=clock,
        connection=app[GITHUB_CONNECTION],
        wake_scheduler=doorbell.ring,
    )
    if settings.role.works:  # a web instance works no batch (review_batches): no engine
        service.engine = _review_engine(app, service)
    review_scheduler = ReviewScheduler(service, app[CLAIMS], idle_poll_s=idle_poll_s(app))
    doorbell.listen(review_scheduler.wake)
    app[REVIEWS] = service
    app[REVIEW_SCHEDULER] = review_scheduler
    yield


async def jira(app: web.Application) -> AsyncIterator[None]:
    """JIRA (when JIRA_URL is set): the JIRA service; its sync is scheduled last (jira_sync)."""
    settings = app[SETTINGS]
    if not settings.jira_enabled:
        yield
        return
    service = JiraService(
        settings=settings,
        db=app[DB],
        bus=app[BUS],
        clock=app[CLOCK],
        scheduler=app[SCHEDULER],
        instance=app[CLAIMS].instance,
    )
    try:
        app[JIRA] = service
        yield
    finally:
        await service.close()


async def pipelines(app: web.Application) -> AsyncIterator[None]:
    """PIPELINES: the ticket pipelines' engine; the pipelines a stop left running resume (and
    those whose question was answered meanwhile), and their tasks stop first at shutdown."""
    jira_service = app.get(JIRA)
    built = build_pipelines(
        app[SETTINGS],
        db=app[DB],
        bus=app[BUS],
        clock=app[CLOCK],
        agents=app.get(AGENTS),
        worktrees=app[WORKTREES],
        github=app[GITHUB_CONNECTION],
        jira=jira_service.client if jira_service is not None else None,
        claims=app[CLAIMS],
    )
    app[PIPELINES] = built
    adopting: list[asyncio.Task[None]] = []
    try:
        if app[SETTINGS].role.works:
            await built.engine.recover()
            await built.resume_answered()
            # every half lease: the running pipelines whose instance died
            adopting.append(asyncio.create_task(built.engine.run(), name="pipelines-adopt"))
        if app[SETTINGS].role.polls_for_work:
            # every WORKER_POLL_INTERVAL: what a web instance set running or paused
            adoption = PipelineAdoption(built.engine, every_s=idle_poll_s(app))
            adopting.append(asyncio.create_task(adoption.run(), name="pipeline-adoption"))
        yield
    finally:
        for task in adopting:
            await stop_at_shutdown(task)
        await built.engine.close()


async def services(app: web.Application) -> AsyncIterator[None]:
    """SERVICES: the record handlers and routes use, built once from the parts above."""
    app[SERVICES] = Services(
        settings=app[SETTINGS],
        db=app[DB],
        bus=app[BUS],
        clock=app[CLOCK],
        claims=app[CLAIMS],
        github_connection=app[GITHUB_CONNECTION],
        agents=app.get(AGENTS),
        reviews=app[REVIEWS],
        worktrees=app[WORKTREES],
        repositories=app[REPOSITORIES],
        jira=app.get(JIRA),
        cycle_types=_cycle_types(app),
        pipelines=app[PIPELINES],
    )
    yield


async def metrics(app: web.Application) -> AsyncIterator[None]:
    """METRICS: the operators' registry (GET /metrics), read from the services at scrape time,
    and the event-loop lag probe on the scheduler."""
    probe = LoopLagProbe()
    app[METRICS] = OperatorMetrics(app[SERVICES], probe)
    app[SCHEDULER].add(
        LOOP_LAG_JOB,
        probe.measure,
        every_s=LOOP_LAG_EVERY_S,
        run_at_start=True,
        lock_name=f"{LOOP_LAG_JOB}:{app[SETTINGS].instance_id}",  # each process measures its own
    )
    try:
        yield
    finally:
        await app[SCHEDULER].remove(LOOP_LAG_JOB)


def _cycle_types(app: web.Application) -> CycleTypes:
    """The cycle types' editor, checking agents against the agents file the runner uses."""
    settings, runner = app[SETTINGS], app.get(AGENTS)
    if runner is not None:
        config = runner.config  # the file the runner already read
    else:
        try:
            config = load_agents_config(settings.agents_file, default_model=settings.model)
        except AgentConfigError as error:
            log.warning("cycle types: the agents file is unusable (%s); the shipped one", error)
            config = load_agents_config(None, default_model=settings.model)
    tools = {tool.name for tool in BUILTIN_TOOLS} | {CLARIFICATION_TOOL, REPORT_TOOL}
    tools |= set(PIPELINE_TOOL_NAMES)  # jira_cli, github_cli: given to each pipeline step
    return CycleTypes(db=app[DB], clock=app[CLOCK], known_agents=config.agents, known_tools=tools)


CONTEXTS: tuple[Context, ...] = (
    database,
    work_claims,
    api_token_check,
    event_bus,
    token_relay,
    scheduler,
    sessions,
    github_app,
    worktrees,
    agents,
    reviews,
    jira,
    pipelines,
    services,
    metrics,
    dispatcher,
    housekeeping,
    review_batches,
    jira_sync,
)
