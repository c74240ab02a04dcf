"""The JIRA sync through the real `jira` library against the protocol fake (Server and Cloud).
This file: full and incremental syncs, deletions, links, attachments and changelogs; rate
limits, concurrency, failures and refreshes are in test_jira_sync_failures.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.clock import SystemClock
from storage import jira_sync, tickets
from tests.fakes.jira import FakeJira
from tests.jira_mirror import (  # noqa: F401  (pytest fixtures, by name)
    Mirror,
    mirror_fixture,
    open_mirror,
)

pytestmark = pytest.mark.both_databases


async def test_full_then_incremental_sync(mirror: Mirror) -> None:
    fake = mirror.fake
    keys = []
    for n in range(25):
        keys.append(fake.add_issue("PROJ", f"issue {n}"))
        fake.tick(60_000)  # a minute apart: only the newest falls in the next run's overlap
    first = await mirror.sync.sync_project("PROJ", trigger="manual")
    assert (first.kind, first.seen, first.created, first.updated) == ("full", 25, 25, 0)
    assert await mirror.keys() == sorted(keys)

    fake.tick(10 * 60_000)  # ten minutes later, outside the overlap
    fake.update_issue(keys[3], summary="renamed")
    added = fake.add_issue("PROJ", "a new one")
    before = len(fake.requests)
    second = await mirror.sync.sync_project("PROJ", trigger="manual")
    assert (second.kind, second.created, second.updated, second.deleted) == ("incremental", 1, 1, 0)
    assert second.seen == 3  # the two changes and the boundary issue, skipped
    assert len(fake.requests) - before == 2  # the search and the count
    stored = await tickets.get_ticket(mirror.db, keys[3])
    assert stored is not None and stored.summary == "renamed"
    assert added in await mirror.keys()
    runs = await jira_sync.recent_runs(mirror.db, project="PROJ")
    assert [(r.kind, r.status, r.created, r.updated) for r in runs] == [
        ("incremental", "complete", 1, 1),
        ("full", "complete", 25, 0),
    ]
    assert all(r.finished_at and r.requests > 0 for r in runs)
    completes = await mirror.events("sync_complete")
    assert [c["kind"] for c in completes] == ["full", "incremental"]
    progress = await mirror.events("sync_progress")
    assert progress[0]["project"] == "PROJ" and progress[-1]["done"] == 3
    batches = await mirror.events("tickets_updated")
    assert sorted(batches[-1]["keys"]) == sorted([keys[3], added])  # type: ignore[arg-type]


async def test_a_change_in_the_boundary_millisecond_is_not_missed(mirror: Mirror) -> None:
    fake = mirror.fake
    first = fake.add_issue("PROJ", "stored first", updated_ms=fake.tick())
    await mirror.sync.sync_project("PROJ", trigger="manual")
    watermark = fake.issue(first).updated_ms
    # Another issue changed in the very same millisecond, but Jira indexed it after our search.
    late = fake.add_issue("PROJ", "indexed late", updated_ms=watermark)
    result = await mirror.sync.sync_project("PROJ", trigger="manual")
    assert (result.created, result.updated) == (1, 0)  # the boundary issue is not stored again
    assert await mirror.keys() == sorted([first, late])
    again = await mirror.sync.sync_project("PROJ", trigger="manual")
    assert (again.seen, again.created, again.updated) == (2, 0, 0)  # the overlap stores nothing


async def test_incremental_query_uses_epoch_milliseconds(mirror: Mirror) -> None:
    mirror.fake.add_issue("PROJ", "one")
    await mirror.sync.sync_project("PROJ", trigger="manual")
    await mirror.sync.sync_project("PROJ", trigger="manual")
    searches = [
        r.query["jql"][0]
        for r in mirror.fake.requests
        if r.path.endswith(("/search", "/search/jql"))
        and "updated >=" in r.query.get("jql", [""])[0]
    ]
    cursor = await jira_sync.get_cursor(mirror.db, "PROJ")
    assert cursor is not None
    assert searches == [
        f'project = "PROJ" AND updated >= {cursor.high_water_ms - cursor.lookback_ms}'
        " ORDER BY key ASC"
    ]


async def test_a_deleted_issue_is_removed_with_its_links(mirror: Mirror) -> None:
    fake = mirror.fake
    keep = fake.add_issue("PROJ", "stays")
    doomed = fake.add_issue("PROJ", "goes")
    fake.link(keep, doomed)
    await mirror.sync.sync_project("PROJ", trigger="manual")
    assert [link.other_key for link in await tickets.links_of(mirror.db, fake.issue(keep).id)] == [
        doomed
    ]
    fake.delete_issue(doomed)
    result = await mirror.sync.sync_project("PROJ", trigger="manual")
    assert result.deleted == 1
    assert await mirror.keys() == [keep]
    kept = await tickets.get_ticket(mirror.db, keep)
    assert kept is not None and await tickets.links_of(mirror.db, kept.id) == []
    deleted = [e for e in await mirror.events("tickets_updated") if e.get("deleted")]
    assert deleted[-1]["deleted"] == [doomed]


async def test_full_sync_deletes_only_what_jira_no_longer_has(mirror: Mirror) -> None:
    fake = mirror.fake
    keys = [fake.add_issue("PROJ", f"n{n}") for n in range(3)]
    await mirror.sync.sync_project("PROJ", trigger="manual")
    fake.delete_issue(keys[1])
    result = await mirror.sync.sync_project("PROJ", trigger="manual", full=True)
    assert (result.kind, result.deleted) == ("full", 1)
    assert await mirror.keys() == [keys[0], keys[2]]


async def test_links_are_stored_both_ways(mirror: Mirror) -> None:
    fake = mirror.fake
    blocker = fake.add_issue("PROJ", "the blocker")
    blocked = fake.add_issue("PROJ", "the blocked")
    fake.link(blocker, blocked, "Blocks")
    await mirror.sync.sync_project("PROJ", trigger="manual")
    from_blocker = await tickets.links_of(mirror.db, fake.issue(blocker).id)
    from_blocked = await tickets.links_of(mirror.db, fake.issue(blocked).id)
    assert [(link.direction, link.relation, link.other_key) for link in from_blocker] == [
        ("outward", "blocks", blocked)
    ]
    assert [(link.direction, link.relation, link.other_key) for link in from_blocked] == [
        ("inward", "is blocked by", blocker)
    ]


async def test_a_link_to_an_unsynced_project_is_kept_from_both_ends(mirror: Mirror) -> None:
    fake = mirror.fake
    ours = fake.add_issue("PROJ", "ours")
    theirs = fake.add_issue("OPS", "theirs")
    fake.link(theirs, ours, "Relates")
    await mirror.sync.sync_project("PROJ", trigger="manual")
    rows = await mirror.db.fetchall(
        "SELECT ticket_id, other_key FROM ticket_links ORDER BY other_key"
    )
    assert [(row[0], row[1]) for row in rows] == [
        (fake.issue(ours).id, theirs),
        (fake.issue(theirs).id, ours),
    ]


async def test_attachment_metadata_is_stored_without_content(mirror: Mirror) -> None:
    fake = mirror.fake
    key = fake.add_issue("PROJ", "with a file")
    fake.add_attachment(key, "debuglog.txt", content=b"x" * 2460)
    await mirror.sync.sync_project("PROJ", trigger="manual")
    stored = await tickets.attachments_of(mirror.db, fake.issue(key).id)
    assert [(a.filename, a.mime_type, a.size) for a in stored] == [
        ("debuglog.txt", "text/plain", 2460)
    ]

    def downloads() -> list[str]:
        return [
            r.path for r in fake.requests if "attachment/content" in r.path or "/secure/" in r.path
        ]

    assert downloads() == []
    stream = await mirror.client.open_attachment(stored[0].content_url, stored[0].id)
    stream.close()
    assert len(downloads()) == 1  # a download would have been seen


async def test_a_truncated_changelog_is_fetched_in_full(database_url: str, tmp_path: Path) -> None:
    fake = FakeJira(deployment="Cloud")
    await fake.start()
    try:
        mirror = await open_mirror(database_url, fake, SystemClock())
        key = fake.add_issue("PROJ", "long history", histories=130)
        await mirror.sync.sync_project("PROJ", trigger="manual")
        stored = await tickets.get_ticket(mirror.db, key)
        assert stored is not None and len(stored.changelog) == 130
        assert len(fake.requests_to("/changelog")) == 2  # 100 + 30
        mirror.client.close()
        await mirror.db.close()
    finally:
        await fake.close()


async def test_cloud_uses_search_jql_and_never_the_removed_search(mirror: Mirror) -> None:
    if mirror.fake.deployment != "Cloud":
        pytest.skip("Cloud only")
    for n in range(15):
        mirror.fake.add_issue("PROJ", f"n{n}")
    await mirror.sync.sync_project("PROJ", trigger="manual")
    paths = [r.path for r in mirror.fake.requests]
    assert "/rest/api/2/search" not in paths
    pages = [r for r in mirror.fake.requests if r.path.endswith("/search/jql")]
    assert len(pages) == 2 and "nextPageToken" in pages[1].query
