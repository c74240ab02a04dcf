"""The event log shared by instances (docs/database.md, Events across instances): every bus on
one database fans out every event, in id order, once; a late commit is never skipped; once-keys,
offline recording and the UI-state merge hold across instances. Each `Database` handle opened on
one database stands for one instance."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import psycopg
import pytest

from bot.clock import Clock, ManualClock, SystemClock
from bot.events.bus import EventBus, Subscription
from bot.pipelines.events import PipelineFailed
from bot.sessions.book import SessionBook
from bot.sessions.presence import Presence
from bot.sessions.recorder import OfflineRecorder
from bot.worktrees.events import WorktreeStatus
from bot.worktrees.states import ProgressKind
from storage import events as event_store
from storage import offline_events
from storage import sessions as session_rows
from storage.database import Database
from tests.conftest import OpenDatabase

pytestmark = pytest.mark.both_databases

NAME = "shared.db"
GATE = 4242  # the test's own advisory lock: holds a publisher between its id and its commit


def status(n: int) -> WorktreeStatus:
    return WorktreeStatus(session_id=str(n), status=ProgressKind.SETUP_OUTPUT)


def failed(pipeline_id: int) -> PipelineFailed:
    return PipelineFailed(
        pipeline_id=pipeline_id, ticket="ACME-7", kind="agent", message="broke", error="broke"
    )


StartInstances = Callable[..., Awaitable[list[EventBus]]]


@pytest.fixture
async def instances(open_database: OpenDatabase) -> AsyncIterator[StartInstances]:
    """`await instances(count, clock)`: `count` buses, each on its own handle of one database,
    started; stopped after the test, passed or failed."""
    started: list[EventBus] = []

    async def start(count: int, clock: Clock | None = None) -> list[EventBus]:
        buses = []
        for _ in range(count):
            clock = clock or SystemClock()
            bus = EventBus(await open_database(NAME), clock, follow_clock=clock)
            await bus.start()
            buses.append(bus)
        started.extend(buses)
        return buses

    yield start
    for bus in started:
        await bus.stop()


async def put(bus: EventBus, n: int, stream: str = "s") -> int:
    event_id = await bus.publish(stream, status(n))
    assert event_id is not None
    return event_id


async def ids_until(subscription: Subscription, count: int) -> list[int]:
    """The ids of the next `count` stored frames the subscription gets."""
    ids: list[int] = []
    async with asyncio.timeout(10):
        while len(ids) < count:
            ids.extend(frame.id for frame in await subscription.next_batch() if frame.id)
    return ids


async def all_ids(db: Database) -> list[int]:
    return [row[0] for row in await db.fetchall("SELECT id FROM events ORDER BY id")]


async def test_subscribers_get_every_event_in_id_order_once(instances: StartInstances) -> None:
    (bus,) = await instances(1)
    subscription = bus.subscribe()
    published = await asyncio.gather(*(put(bus, n) for n in range(120)))
    assert await ids_until(subscription, 120) == sorted(published) == await all_ids(bus.db)
    assert bus.last_id == max(published)


async def test_an_event_published_once_under_a_key_by_two_instances_is_stored_once(
    instances: StartInstances,
) -> None:
    first, second = await instances(2)
    outcomes = await asyncio.gather(
        *(
            bus.publish("s", status(1), once_key="delivery-7:status")
            for _ in range(10)
            for bus in (first, second)
        )
    )
    stored = [outcome for outcome in outcomes if outcome is not None]
    assert len(stored) == 1 and await all_ids(first.db) == stored


async def test_page_merges_on_two_instances_all_land(open_database: OpenDatabase) -> None:
    clock = SystemClock()
    books = [SessionBook(db=await open_database(NAME), clock=clock, owner="o") for _ in range(2)]
    await session_rows.create(books[0].db, "sess", "o", now=clock.now())
    await asyncio.gather(
        *(books[n % 2].merge_pages("sess", {f"/page/{n}": {"n": n}}) for n in range(30))
    )
    pages = (await books[1].ui_state("sess"))["pages"]
    assert {path: part["n"] for path, part in pages.items()} == {f"/page/{n}": n for n in range(30)}


# -- PostgreSQL: instances that publish concurrently ----------------------------------------

on_postgres = pytest.mark.parametrize("database_engine", ["postgresql"], indirect=True)


@on_postgres
async def test_every_instance_sees_every_instance_s_events_in_id_order_once(
    instances: StartInstances,
) -> None:
    buses = await instances(3)
    subscriptions = [bus.subscribe() for bus in buses]
    published = await asyncio.gather(*(put(buses[n % 2], n, f"s{n % 3}") for n in range(150)))
    for subscription in subscriptions:
        assert await ids_until(subscription, 150) == sorted(published)
    assert await all_ids(buses[2].db) == sorted(published)


async def _until(condition: Callable[[], Awaitable[bool]]) -> None:
    """Wait for a state no event announces (the server's lock table, a connection's end)."""
    for _ in range(1000):
        if await condition():
            return
        await asyncio.sleep(0.01)
    raise TimeoutError("the condition never held")


@on_postgres
async def test_a_commit_held_after_its_id_was_drawn_is_neither_skipped_nor_overtaken(
    instances: StartInstances, database_urls: Callable[[str], str]
) -> None:
    """Instance A draws an event id and is held before its commit; instance B publishes
    meanwhile. B must wait for A (the event log's lock), so its id is higher and committed
    later, and a third instance's reader gets A's event first, then B's: none lower than one
    already seen, the late one not missed."""
    first, second, reader = await instances(3)
    subscription = reader.subscribe()
    with psycopg.connect(database_urls(NAME), autocommit=True) as gate:
        gate.execute("SELECT pg_advisory_lock(%s)", (GATE,))
        held = asyncio.create_task(
            first.db.write_many(
                [
                    (event_store.INSERT_EVENT, ("a", "worktree_status", "t", "{}")),
                    ("SELECT pg_advisory_xact_lock(?)", (GATE,)),  # held here, id drawn
                ]
            )
        )

        def waiting(count: int) -> Callable[[], Awaitable[bool]]:
            async def check() -> bool:
                ungranted = await reader.db.fetchval(
                    "SELECT COUNT(*) FROM pg_locks"
                    " WHERE locktype = 'advisory' AND NOT granted AND database = ("
                    "  SELECT oid FROM pg_database WHERE datname = current_database())"
                )
                return int(ungranted) == count

            return check

        await _until(waiting(1))  # A drew its id and waits for the gate
        late = asyncio.create_task(second.publish("b", status(2)))
        await _until(waiting(2))  # B waits for A's commit before drawing its own
        assert await all_ids(reader.db) == []
        gate.execute("SELECT pg_advisory_unlock(%s)", (GATE,))
    held_id = (await held)[0].rows[0][0]
    late_id = await late
    assert held_id < late_id
    assert await ids_until(subscription, 2) == [held_id, late_id]


@on_postgres
async def test_a_lost_listening_connection_is_made_again_and_reads_what_it_missed(
    instances: StartInstances, database_urls: Callable[[str], str]
) -> None:
    clock = ManualClock()
    publisher, listener = await instances(2, clock)
    follower = listener.follower
    assert follower is not None
    await asyncio.wait_for(follower.listening.wait(), 10)
    subscription = listener.subscribe()
    with psycopg.connect(database_urls(NAME), autocommit=True) as admin:
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE application_name = 'biagent-listen-biagent_events'"
            " AND pid IN (SELECT pid FROM pg_stat_activity WHERE datname = current_database())"
        )

    async def lost() -> bool:
        return not follower.listening.is_set()

    await _until(lost)
    missed = await publisher.publish("s", status(1))  # no one hears its notice on `listener`
    await clock.advance(follower.retry_s)  # the pause before connecting again
    assert await ids_until(subscription, 1) == [missed]
    assert follower.connections == 2


@on_postgres
async def test_an_acknowledged_offline_event_is_not_recorded_again_by_another_instance(
    instances: StartInstances,
) -> None:
    clock = ManualClock()
    first, second = buses = await instances(2, clock)
    owner = "owner-1"
    await session_rows.create(first.db, "sess", owner, now=clock.now())
    await session_rows.replace_tabs(
        first.db, "sess", owner, [session_rows.TabRow("pipeline", "5")], now=clock.now()
    )
    recorders = [
        OfflineRecorder(bus.db, bus, clock, Presence(), owner, ttl_s=3600.0, cap=100)
        for bus in buses
    ]
    for recorder in recorders:
        await recorder.start()
    await first.publish("pipeline:5", failed(5))
    published_on_second = await second.publish("pipeline:5", failed(5))
    assert first.follower is not None and published_on_second is not None
    await first.follower.delivered(published_on_second)
    await recorders[0].catch_up()
    unread = await offline_events.unread(first.db, "sess", now=clock.now(), limit=10)
    assert [row.event.type for row in unread] == ["pipeline_failed"] * 2
    await offline_events.acknowledge_up_to(first.db, "sess", unread[-1].id)
    assert second.follower is not None
    await second.follower.delivered(unread[-1].event.id)
    assert await recorders[1].catch_up() == 0  # it goes on from the shared cursor
    assert await offline_events.unread(second.db, "sess", now=clock.now(), limit=10) == []
