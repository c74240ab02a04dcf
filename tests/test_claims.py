"""Work claimed once (storage/claims.py, bot/claims.py): on SQLite and on PostgreSQL, two
claimers never take the same row, a lease that ran out is taken over, a renewed one is not,
and an instance older than the database's schema stops claiming."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from bot.claims import VERSION_CHECK_S, WorkClaims
from bot.clock import ManualClock
from storage import claims, deliveries, jira_sync
from storage.claims import Lease
from storage.database import Database
from storage.jira_sync import RunStatus, SyncKind
from storage.timestamps import to_text

pytestmark = pytest.mark.both_databases

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
LEASE_S = 60.0


def lease(instance: str, at: datetime = NOW) -> Lease:
    return Lease(instance, at, at + timedelta(seconds=LEASE_S))


async def accept_many(db: Database, count: int) -> None:
    for n in range(count):
        await deliveries.accept(
            db, source="github", delivery_id=f"d-{n}", event="ping", action=None,
            installation_id=None, payload="{}", now=NOW,
        )  # fmt: skip


@pytest.fixture
async def second(database_url: str, db: Database) -> AsyncIterator[Database]:
    """Another connection set to the test's database, as a second instance has."""
    other = await Database.open(database_url)
    try:
        yield other
    finally:
        await other.close()


async def test_two_claimers_at_once_never_take_the_same_delivery(
    db: Database, second: Database
) -> None:
    await accept_many(db, 60)

    async def claimer(database: Database, instance: str) -> list[int]:
        taken: list[int] = []
        while batch := await deliveries.claim_due(database, lease=lease(instance), limit=3):
            taken += [delivery.id for delivery in batch]
        return taken

    first, other = await asyncio.gather(claimer(db, "a"), claimer(second, "b"))
    assert not set(first) & set(other)
    assert len(first) + len(other) == 60
    owners = await db.fetchall("SELECT claimed_by, COUNT(*) FROM deliveries GROUP BY claimed_by")
    assert {row[0]: row[1] for row in owners} == {
        name: len(taken) for name, taken in (("a", first), ("b", other)) if taken
    }


async def test_a_lapsed_lease_is_taken_over_and_its_attempt_counted(db: Database) -> None:
    await accept_many(db, 1)
    (claimed,) = await deliveries.claim_due(db, lease=lease("a"), limit=1)
    assert (claimed.status, claimed.attempts) == ("processing", 1)
    # Still held: another instance finds nothing, and waits until the lease's end.
    assert (
        await deliveries.claim_due(db, lease=lease("b", NOW + timedelta(seconds=30)), limit=5) == []
    )
    assert await deliveries.next_due_at(db) == to_text(NOW + timedelta(seconds=LEASE_S))

    later = NOW + timedelta(seconds=LEASE_S + 1)
    (taken,) = await deliveries.claim_due(db, lease=lease("b", later), limit=5)
    assert (taken.id, taken.attempts) == (claimed.id, 2)
    assert await claims.holder(db, "deliveries", taken.id, now=later) == "b"


async def test_a_renewed_lease_is_not_taken_over(db: Database) -> None:
    await accept_many(db, 1)
    (claimed,) = await deliveries.claim_due(db, lease=lease("a"), limit=1)
    renewed_at = NOW + timedelta(seconds=LEASE_S / 3)
    assert await claims.renew(db, lease("a", renewed_at)) == 1
    past_first_lease = NOW + timedelta(seconds=LEASE_S + 1)
    assert await deliveries.claim_due(db, lease=lease("b", past_first_lease), limit=5) == []
    assert await claims.holder(db, "deliveries", claimed.id, now=past_first_lease) == "a"
    # Done: its lease is cleared, so the heartbeat renews nothing more and nobody takes it.
    await db.write(*deliveries.mark_done_statement(claimed.id, now=renewed_at))
    assert await claims.renew(db, lease("a", renewed_at)) == 0
    assert await deliveries.claim_due(db, lease=lease("b", NOW + timedelta(days=1)), limit=5) == []


async def test_claim_one_refuses_a_row_held_by_another_and_renews_its_own(
    db: Database, second: Database
) -> None:
    await accept_many(db, 1)
    (delivery_pk,) = [row[0] for row in await db.fetchall("SELECT id FROM deliveries")]
    results = await asyncio.gather(
        claims.claim_one(db, "deliveries", delivery_pk, lease("a")),
        claims.claim_one(second, "deliveries", delivery_pk, lease("b")),
    )
    assert sorted(results) == [False, True]
    winner = "a" if results[0] else "b"
    assert await claims.claim_one(db, "deliveries", delivery_pk, lease(winner, NOW + timedelta(1)))
    await claims.release(db, "deliveries", delivery_pk, winner)
    assert await claims.holder(db, "deliveries", delivery_pk, now=NOW) is None
    assert await claims.claim_one(db, "deliveries", delivery_pk, lease("c"))


async def test_claim_many_takes_free_and_own_rows_and_held_too_takes_all(db: Database) -> None:
    await accept_many(db, 3)
    ids = [row[0] for row in await db.fetchall("SELECT id FROM deliveries ORDER BY id")]
    assert await claims.claim_one(db, "deliveries", ids[0], lease("a"))
    assert await claims.claim_one(db, "deliveries", ids[1], lease("b"))
    assert await claims.claim_many(db, "deliveries", lease("a"), where="1 = 1") == [ids[0], ids[2]]
    assert await claims.claim_many(db, "deliveries", lease("c"), where="1 = 1") == []
    taken = await claims.claim_many(db, "deliveries", lease("c"), where="1 = 1", held_too=True)
    assert taken == ids


async def test_an_instance_older_than_the_schema_stops_claiming(db: Database) -> None:
    clock = ManualClock(NOW)
    work = WorkClaims(db=db, clock=clock, instance="old", lease_s=LEASE_S)
    assert await work.may_claim() and not work.outdated
    # A newer instance migrates the database past this code.
    newer = work.code_version + 1
    await db.write(
        "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
        (newer, "from_the_future", to_text(NOW)),
    )
    assert await work.may_claim()  # checked again only after VERSION_CHECK_S
    await clock.advance(VERSION_CHECK_S)
    assert not await work.may_claim()
    assert (work.outdated, work.database_version) == (True, newer)


async def test_a_jira_run_whose_lease_is_live_is_not_failed_at_start_up(db: Database) -> None:
    live = await jira_sync.start_run(
        db, project="LIVE", kind=SyncKind.FULL, trigger="schedule", now=NOW
    )
    dead = await jira_sync.start_run(
        db, project="DEAD", kind=SyncKind.FULL, trigger="schedule", now=NOW
    )
    assert await jira_sync.acquire_lease(db, "LIVE", holder="other", now=NOW, ttl_s=300)
    assert await jira_sync.fail_abandoned_runs(db, now=NOW + timedelta(seconds=1)) == 1
    runs = {run.id: run.status for run in await jira_sync.recent_runs(db)}
    assert runs == {live: RunStatus.RUNNING, dead: RunStatus.FAILED}


async def test_a_new_jira_run_fails_the_one_a_lapsed_lease_left_running(db: Database) -> None:
    left = await jira_sync.start_run(db, project="P", kind=SyncKind.FULL, trigger="cli", now=NOW)
    assert await jira_sync.acquire_lease(db, "P", holder="dead", now=NOW, ttl_s=300)
    later = NOW + timedelta(seconds=301)
    assert await jira_sync.acquire_lease(db, "P", holder="me", now=later, ttl_s=300)
    assert await jira_sync.fail_abandoned_runs(db, now=later, project="P", holder="me") == 1
    (run,) = await jira_sync.recent_runs(db)
    assert (run.id, run.status) == (left, RunStatus.FAILED)
