"""EventBus.publish with `once_key`: an event published under a key is never published again,
while the statements that come with it still commit (a handler run twice for one delivery)."""

from __future__ import annotations

import pytest

from bot.clock import ManualClock
from bot.events.bus import EventBus
from bot.github.events import InstallationUpdated
from storage import events as event_store
from storage.database import Database

pytestmark = pytest.mark.both_databases


async def test_an_event_published_under_a_key_comes_once(db: Database) -> None:
    bus = EventBus(db, ManualClock())
    await bus.start()
    subscription = bus.subscribe(None)
    updated = InstallationUpdated(installation_id=1, account="octo", action="created")
    change = ("INSERT INTO meta (key, value) VALUES ('seen', '1')"
              " ON CONFLICT (key) DO UPDATE"
              " SET value = CAST(CAST(meta.value AS INTEGER) + 1 AS TEXT)", ())  # fmt: skip
    first = await bus.publish("installation:1", updated, together_with=[change], once_key="k")
    again = await bus.publish("installation:1", updated, together_with=[change], once_key="k")
    other = await bus.publish("installation:1", updated, once_key="k2")
    assert first is not None and again is None and other is not None and other > first
    stored = await event_store.read_since(db, 0, limit=10)
    assert [event.id for event in stored] == [first, other]
    assert await db.fetchval("SELECT value FROM meta WHERE key = 'seen'") == "2"
    assert [frame.id for frame in subscription.frames] == [first, other]
    await event_store.prune_through(db, first)
    assert await db.fetchval("SELECT COUNT(*) FROM event_keys") == 1  # pruned with its event
