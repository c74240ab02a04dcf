"""The dispatcher: retries with backoff, gives up after the limit, isolates concerns."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import aiohttp
import pytest
from gidgethub import routing, sansio
from gidgethub.abc import GitHubAPI

from bot.claims import VERSION_CHECK_S, WorkClaims
from bot.clock import ManualClock
from bot.concerns import Concern, HandlerContext
from bot.config import Secret
from bot.dispatcher import Dispatcher, backoff_delay
from bot.events.bus import EventBus
from bot.github.connection import GitHubConnection
from bot.github.credentials import AppCredentials
from bot.github.manners import PoliteInstallationAPI
from bot.services import Services
from storage import deliveries
from storage.database import Database
from tests.helpers import make_settings

pytestmark = pytest.mark.both_databases

calls: list[str] = []


def failing_router(fail_times: int) -> routing.Router:
    router = routing.Router()
    state = {"left": fail_times}

    @router.register("ping")
    async def flaky(event: sansio.Event, gh: GitHubAPI | None, context: HandlerContext) -> None:
        calls.append("flaky")
        if state["left"] > 0:
            state["left"] -= 1
            raise RuntimeError("GitHub said 502")

    return router


def steady_router() -> routing.Router:
    router = routing.Router()

    @router.register("ping")
    async def steady(event: sansio.Event, gh: GitHubAPI | None, context: HandlerContext) -> None:
        calls.append("steady")

    return router


async def make_dispatcher(
    db: Database, tmp_path: Path, clock: ManualClock, concerns: list[Concern], max_attempts: int = 3
) -> Dispatcher:
    """A dispatcher over `db` (the conftest fixture, which closes it after the test)."""
    settings = make_settings(tmp_path)
    bus = EventBus(db, clock)
    await bus.start()
    claims = WorkClaims(db=db, clock=clock, instance="test", lease_s=settings.work_lease_seconds)
    services = Services(settings=settings, db=db, bus=bus, clock=clock, claims=claims)
    return Dispatcher(services, concerns, max_attempts=max_attempts)


async def store_ping(dispatcher: Dispatcher, clock: ManualClock) -> None:
    await deliveries.accept(
        dispatcher.services.db,
        source="github",
        delivery_id="p-1",
        event="ping",
        action=None,
        installation_id=None,
        payload='{"zen": "hi"}',
        now=clock.now(),
    )


async def test_an_instance_older_than_the_database_claims_no_delivery(
    db: Database, tmp_path: Path, manual_clock: ManualClock
) -> None:
    calls.clear()
    dispatcher = await make_dispatcher(
        db, tmp_path, manual_clock, [Concern("steady", steady_router())]
    )
    claims = dispatcher.services.claims
    await db.write(
        "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, 'newer', 'now')",
        (claims.code_version + 1,),
    )
    await store_ping(dispatcher, manual_clock)
    await dispatcher.drain()
    assert calls == [] and claims.outdated
    (waiting,) = await deliveries.list_recent(db)
    assert (waiting.status, waiting.attempts) == ("pending", 0)
    # The new version's instance (here: the same code, told it is new) works it.
    await db.write("DELETE FROM schema_migrations WHERE name = 'newer'")
    await manual_clock.advance(VERSION_CHECK_S)
    await dispatcher.drain()
    assert calls == ["steady"] and not claims.outdated


async def test_failed_concern_is_retried_alone_after_backoff(
    db: Database, tmp_path: Path, manual_clock: ManualClock
) -> None:
    calls.clear()
    dispatcher = await make_dispatcher(
        db,
        tmp_path,
        manual_clock,
        [Concern("flaky", failing_router(1)), Concern("steady", steady_router())],
    )
    await store_ping(dispatcher, manual_clock)
    await dispatcher.drain()
    db = dispatcher.services.db
    failed = await deliveries.list_recent(db)
    assert (failed[0].status, failed[0].attempts) == ("failed", 1)
    assert "flaky: RuntimeError: GitHub said 502" in (failed[0].last_error or "")
    assert calls == ["flaky", "steady"]
    await dispatcher.drain()  # not due yet: nothing runs
    assert calls == ["flaky", "steady"]
    await manual_clock.advance(backoff_delay(1))
    await dispatcher.drain()
    done = await deliveries.list_recent(db)
    assert (done[0].status, done[0].attempts, done[0].last_error) == ("done", 2, None)
    assert calls == ["flaky", "steady", "flaky"]


async def test_gives_up_after_the_attempt_limit(
    db: Database, tmp_path: Path, manual_clock: ManualClock
) -> None:
    calls.clear()
    dispatcher = await make_dispatcher(
        db, tmp_path, manual_clock, [Concern("flaky", failing_router(99))], max_attempts=3
    )
    await store_ping(dispatcher, manual_clock)
    for attempt in range(1, 4):
        await dispatcher.drain()
        await manual_clock.advance(backoff_delay(attempt))
    await dispatcher.drain()
    db = dispatcher.services.db
    dead = (await deliveries.list_recent(db))[0]
    assert (dead.status, dead.attempts) == ("dead", 3)
    assert calls == ["flaky"] * 3
    statuses = [
        json.loads(row[0])["status"]
        for row in await db.fetchall(
            "SELECT data FROM events WHERE type = 'delivery_processed' ORDER BY id"
        )
    ]
    assert statuses == ["failed", "failed", "dead"]


async def test_an_unparseable_stored_payload_is_rejected_without_retry(
    db: Database, tmp_path: Path, manual_clock: ManualClock
) -> None:
    dispatcher = await make_dispatcher(db, tmp_path, manual_clock, [Concern("s", steady_router())])
    await deliveries.accept(
        dispatcher.services.db,
        source="github",
        delivery_id="bad",
        event="ping",
        action=None,
        installation_id=None,
        payload="{broken",
        now=manual_clock.now(),
    )
    await dispatcher.drain()
    rejected = (await deliveries.list_recent(dispatcher.services.db))[0]
    assert (rejected.status, rejected.attempts) == ("rejected", 1)
    assert (rejected.last_error or "").startswith("rejected, not retried: the payload is not valid")


async def test_backoff_grows_and_is_capped() -> None:
    assert [backoff_delay(n) for n in (1, 2, 3)] == [5.0, 10.0, 20.0]
    assert backoff_delay(30) == 3600.0


async def test_only_concerns_with_a_handler_run_and_get_a_result(
    db: Database, tmp_path: Path, manual_clock: ManualClock
) -> None:
    calls.clear()
    deaf = routing.Router()

    @deaf.register("issues", action="opened")
    async def never(event: sansio.Event, gh: GitHubAPI | None, context: HandlerContext) -> None:
        calls.append("deaf")

    dispatcher = await make_dispatcher(
        db,
        tmp_path,
        manual_clock,
        [Concern("deaf", deaf), Concern("flaky", failing_router(1)), Concern("s", steady_router())],
    )
    await store_ping(dispatcher, manual_clock)
    await dispatcher.drain()
    db = dispatcher.services.db
    results = {
        row[0]: row[1] for row in await db.fetchall("SELECT concern, status FROM delivery_results")
    }
    # The last concern's result is committed with the delivery's `failed` mark.
    assert results == {"flaky": "failed", "s": "done"}
    assert calls == ["flaky", "steady"]
    await manual_clock.advance(backoff_delay(1))
    await dispatcher.drain()
    assert calls == ["flaky", "steady", "flaky"]  # the retry skips what already succeeded
    assert (await deliveries.list_recent(db))[0].status == "done"


async def test_handlers_get_the_polite_client_of_the_delivery_installation(
    db: Database, tmp_path: Path, manual_clock: ManualClock
) -> None:
    given: list[GitHubAPI | None] = []
    router = routing.Router()

    @router.register("ping")
    async def record(event: sansio.Event, gh: GitHubAPI | None, context: HandlerContext) -> None:
        given.append(gh)

    dispatcher = await make_dispatcher(db, tmp_path, manual_clock, [Concern("record", router)])
    async with aiohttp.ClientSession() as session:
        github = GitHubConnection(api_url="http://127.0.0.1:9", session=session, clock=manual_clock)
        credentials = AppCredentials("1", Secret("unused: no request is made"), None)
        github.connect(credentials, webhook_secret=None, origin="the test")
        dispatcher.services = dataclasses.replace(dispatcher.services, github_connection=github)
        for delivery_id, installation_id in (("with", 7), ("without", None)):
            await deliveries.accept(
                dispatcher.services.db,
                source="github",
                delivery_id=delivery_id,
                event="ping",
                action=None,
                installation_id=installation_id,
                payload="{}",
                now=manual_clock.now(),
            )
        await dispatcher.drain()
        await github.close()
    polite = [gh for gh in given if gh is not None]
    assert len(given) == 2 and len(polite) == 1
    assert isinstance(polite[0], PoliteInstallationAPI) and polite[0].installation_id == 7


def shape_error_router() -> routing.Router:
    router = routing.Router()

    @router.register("ping")
    async def read_hook(event: sansio.Event, gh: GitHubAPI | None, context: HandlerContext) -> None:
        calls.append("shape")
        event.data["hook"]["config"]

    return router


async def test_a_payload_shape_error_is_not_retried_while_a_502_beside_it_is(
    db: Database, tmp_path: Path, manual_clock: ManualClock
) -> None:
    calls.clear()
    dispatcher = await make_dispatcher(
        db,
        tmp_path,
        manual_clock,
        [Concern("shape", shape_error_router()), Concern("flaky", failing_router(1))],
    )
    await store_ping(dispatcher, manual_clock)
    await dispatcher.drain()
    failed = (await deliveries.list_recent(db))[0]
    assert (failed.status, failed.attempts) == ("failed", 1)
    assert failed.last_error == (
        "shape: payload rejected: KeyError: 'hook'; flaky: RuntimeError: GitHub said 502"
    )
    await manual_clock.advance(backoff_delay(1))
    await dispatcher.drain()
    assert calls == ["shape", "flaky", "flaky"]  # the shape error is not run again
    rejected = (await deliveries.list_recent(db))[0]
    assert (rejected.status, rejected.attempts) == ("rejected", 2)
    assert rejected.last_error == "rejected, not retried: shape: payload rejected: KeyError: 'hook'"
