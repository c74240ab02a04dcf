"""Redelivering a stored delivery: from scratch when idle, refused (and untouched) while worked."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from storage import deliveries
from storage.claims import Lease
from storage.database import Database

pytestmark = pytest.mark.both_databases

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)


async def a_worked_delivery(db: Database) -> int:
    """A delivery claimed by a dispatcher, with one concern already done."""
    await deliveries.accept(
        db, source="github", delivery_id="d-1", event="ping", action=None,
        installation_id=None, payload="{}", now=NOW,
    )  # fmt: skip
    lease = Lease("test", NOW, NOW + timedelta(seconds=60))
    (claimed,) = await deliveries.claim_due(db, lease=lease, limit=1)
    await db.write(*deliveries.record_concern_statement(claimed.id, "reviews", error=None, now=NOW))
    assert await deliveries.done_concerns(db, claimed.id) == {"reviews"}
    return claimed.id


async def test_a_redeliver_refused_while_the_delivery_is_worked_keeps_its_results(
    db: Database,
) -> None:
    delivery_pk = await a_worked_delivery(db)
    assert not await deliveries.redeliver(db, delivery_pk, now=NOW)
    assert await deliveries.done_concerns(db, delivery_pk) == {"reviews"}


async def test_a_redeliver_of_an_idle_delivery_starts_from_scratch(db: Database) -> None:
    delivery_pk = await a_worked_delivery(db)
    await db.write(*deliveries.mark_done_statement(delivery_pk, now=NOW))
    assert await deliveries.redeliver(db, delivery_pk, now=NOW)
    assert await deliveries.done_concerns(db, delivery_pk) == set()
    again = await deliveries.get(db, delivery_pk)
    assert again is not None and (again.status, again.attempts) == ("pending", 0)
