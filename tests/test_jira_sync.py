"""The JIRA sync through the real `jira` library against the protocol fake (Server and Cloud)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from jira import JIRA

from bot.clock import Clock, ManualClock, SystemClock
from bot.config import Secret
from bot.events.bus import EventBus
from bot.jira.client import JiraBadRequest, JiraClient
from bot.jira.sync import JiraSync, SyncAlreadyRunning
from storage import jira_sync, tickets
from storage.database import Database
from tests.fakes.jira import FakeJira
from tests.helpers import load_json

pytestmark = pytest.mark.both_databases


@dataclass
class Mirror:
    fake: FakeJira
    db: Database
    bus: EventBus
    client: JiraClient
    sync: JiraSync

    async def keys(self) -> list[str]:
        rows = await self.db.fetchall("SELECT key FROM tickets ORDER BY key")
        return [row[0] for row in rows]

    async def events(self, type_name: str) -> list[dict[str, object]]:
        rows = await self.db.fetchall(
            "SELECT data FROM events WHERE type = ? ORDER BY id", (type_name,)
        )
        import json

        return [json.loads(row[0]) for row in rows]


async def open_mirror(
    database_url: str, fake: FakeJira, clock: Clock, **sync_options: object
) -> Mirror:
    db = await Database.open(database_url)
    await db.migrate()
    bus = EventBus(db, clock)
    await bus.start()
    client = JiraClient(url=fake.url, email=fake.email, api_token=Secret(fake.token), clock=clock)
    sync = JiraSync(db=db, bus=bus, clock=clock, client=client, **sync_options)  # type: ignore[arg-type]
    return Mirror(fake, db, bus, client, sync)


@contextlib.asynccontextmanager
async def mirror_of(database_url: str, deployment: str) -> AsyncIterator[Mirror]:
    """A Jira fake of that deployment on loopback and a mirror syncing it, 10 issues a page."""
    fake = FakeJira(deployment=deployment)
    await fake.start()
    opened = await open_mirror(database_url, fake, SystemClock(), page_size=10)
    try:
        yield opened
    finally:
        opened.client.close()
        await opened.db.close()
        await fake.close()


@pytest.fixture(params=["Server", "Cloud"])
async def mirror(request: pytest.FixtureRequest, database_url: str) -> AsyncIterator[Mirror]:
    async with mirror_of(database_url, request.param) as opened:
        yield opened


@pytest.fixture
async def cloud(database_url: str) -> AsyncIterator[Mirror]:
    async with mirror_of(database_url, "Cloud") as opened:
        yield opened


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


class WatchedClock(ManualClock):
    """A manual clock that tells when something starts sleeping on it, and when it wakes."""

    def __init__(self) -> None:
        super().__init__()
        self.sleeping = asyncio.Event()
        self.woke = asyncio.Event()
        self.asked: list[float] = []

    async def sleep(self, seconds: float) -> None:
        self.asked.append(seconds)
        self.sleeping.set()
        await super().sleep(seconds)
        self.woke.set()


async def test_a_429_is_honoured_after_retry_after(
    database_url: str, tmp_path: Path, fake_jira: FakeJira
) -> None:
    clock = WatchedClock()
    mirror = await open_mirror(database_url, fake_jira, clock)
    fake_jira.add_issue("PROJ", "one")
    await mirror.client.connect()
    fake_jira.throttle(retry_after=7)
    task = asyncio.create_task(mirror.sync.sync_project("PROJ", trigger="manual"))
    await asyncio.wait_for(clock.sleeping.wait(), 10)  # Jira answered 429; the sync waits
    assert clock.asked == [7]
    answered = len(fake_jira.requests)
    assert fake_jira.requests[-1].path.endswith("/search")  # the throttled search
    await clock.advance(6)
    assert not clock.woke.is_set() and not task.done()
    assert len(fake_jira.requests) == answered  # nothing sent before Retry-After has passed
    await clock.advance(1)
    await asyncio.wait_for(clock.woke.wait(), 10)
    result = await asyncio.wait_for(task, 10)
    assert result.created == 1
    assert len(fake_jira.requests) > answered  # the search again, once the wait was over
    mirror.client.close()
    await mirror.db.close()


async def test_two_syncs_of_one_project_never_run_at_once(mirror: Mirror) -> None:
    mirror.fake.add_issue("PROJ", "one")
    job = await mirror.sync.begin("PROJ", trigger="manual")
    with pytest.raises(SyncAlreadyRunning):
        await mirror.sync.begin("PROJ", trigger="manual")
    other_process = JiraSync(
        db=mirror.db, bus=mirror.bus, clock=SystemClock(), client=mirror.client
    )
    with pytest.raises(SyncAlreadyRunning):
        await other_process.begin("PROJ", trigger="cli")
    await job.run()
    assert (await other_process.sync_project("PROJ", trigger="cli")).kind == "incremental"


async def test_a_failed_sync_is_recorded_and_announced(
    database_url: str, tmp_path: Path, fake_jira: FakeJira
) -> None:
    mirror = await open_mirror(database_url, fake_jira, SystemClock(), jql_filter="nosuchfield = 1")
    fake_jira.add_issue("PROJ", "one")
    with pytest.raises(Exception, match="nosuchfield"):
        await mirror.sync.sync_project("PROJ", trigger="manual")
    runs = await jira_sync.recent_runs(mirror.db)
    assert runs[0].status == "failed" and "nosuchfield" in (runs[0].error or "")
    errors = await mirror.events("sync_error")
    assert errors[0]["project"] == "PROJ"
    assert await jira_sync.lease_holder(mirror.db, "PROJ", now=SystemClock().now()) is None
    mirror.client.close()
    await mirror.db.close()


async def test_jira_jql_narrows_the_scope_and_names_the_projects(
    database_url: str, tmp_path: Path, fake_jira: FakeJira
) -> None:
    mirror = await open_mirror(
        database_url, fake_jira, SystemClock(), jql_filter='project = PROJ AND labels = "backend"'
    )
    wanted = fake_jira.add_issue("PROJ", "backend work", labels=("backend",))
    fake_jira.add_issue("PROJ", "frontend work", labels=("frontend",))
    fake_jira.add_issue("OPS", "elsewhere", labels=("backend",))
    assert await mirror.sync.projects() == ["PROJ"]
    await mirror.sync.sync_all(trigger="schedule")
    assert await mirror.keys() == [wanted]
    mirror.client.close()
    await mirror.db.close()


async def test_jira_refuses_an_id_search_naming_a_deleted_issue(mirror: Mirror) -> None:
    key = mirror.fake.add_issue("PROJ", "soon gone")
    issue_id = mirror.fake.issue(key).id
    found = await mirror.client.search_page(f"id in ({issue_id})", fields=["id"])
    assert [issue["id"] for issue in found.issues] == [issue_id]
    mirror.fake.delete_issue(key)
    with pytest.raises(JiraBadRequest, match=f"An issue with key '{issue_id}' does not exist"):
        await mirror.client.search_page(f"id in ({issue_id})", fields=["id"])
    if mirror.fake.deployment == "Server":
        page = await mirror.client.search_page(
            f"id in ({issue_id})", fields=["id"], validate_query=False
        )
        assert page.issues == []


async def test_a_deletion_is_found_and_the_next_syncs_still_succeed(mirror: Mirror) -> None:
    fake = mirror.fake
    keys = [fake.add_issue("PROJ", f"n{n}") for n in range(3)]
    await mirror.sync.sync_project("PROJ", trigger="manual")
    fake.delete_issue(keys[0])
    assert (await mirror.sync.sync_project("PROJ", trigger="manual")).deleted == 1
    fake.delete_issue(keys[1])
    full = await mirror.sync.sync_project("PROJ", trigger="manual", full=True)
    assert (full.kind, full.deleted) == ("full", 1)
    again = await mirror.sync.sync_project("PROJ", trigger="manual")
    assert (again.kind, again.deleted) == ("incremental", 0)
    assert await mirror.keys() == [keys[2]]
    runs = await jira_sync.recent_runs(mirror.db, project="PROJ")
    assert [run.status for run in runs] == ["complete"] * 4


async def test_an_issue_moved_out_of_scope_is_dropped_on_cloud(
    database_url: str, tmp_path: Path
) -> None:
    fake = FakeJira(deployment="Cloud")
    await fake.start()
    try:
        mirror = await open_mirror(database_url, fake, SystemClock(), jql_filter="labels = backend")
        kept = fake.add_issue("PROJ", "kept", labels=("backend",))
        moved = fake.add_issue("PROJ", "moved", labels=("backend",))
        await mirror.sync.sync_project("PROJ", trigger="manual")
        fake.update_issue(moved, labels=["frontend"])
        result = await mirror.sync.sync_project("PROJ", trigger="manual", full=True)
        assert result.deleted == 1 and await mirror.keys() == [kept]
        assert fake.requests_to(f"/issue/{fake.issue(moved).id}")  # confirmed it still exists
        mirror.client.close()
        await mirror.db.close()
    finally:
        await fake.close()


async def test_a_sync_never_asks_for_the_field_list(mirror: Mirror) -> None:
    fake = mirror.fake

    def search_with_the_bare_library() -> None:
        bare = JIRA(server=fake.url, basic_auth=(fake.email, fake.token), max_retries=0)
        bare.search_issues('project = "PROJ"', json_result=True)
        bare.close()

    await asyncio.to_thread(search_with_the_bare_library)
    assert len(fake.requests_to("/field")) == 1  # the library alone asks before its search
    fake.requests.clear()
    mirror.fake.add_issue("PROJ", "one")
    await mirror.sync.sync_project("PROJ", trigger="manual")
    mirror.fake.add_issue("PROJ", "two")
    await mirror.sync.sync_project("PROJ", trigger="manual")
    assert mirror.fake.requests_to("/field") == []


async def test_cloud_without_approximate_count_lists_ids_instead(cloud: Mirror) -> None:
    fake = cloud.fake
    fake.approximate_count_enabled = False
    keys = [fake.add_issue("PROJ", f"n{n}") for n in range(3)]
    first = await cloud.sync.sync_project("PROJ", trigger="manual")
    assert (first.kind, first.created) == ("full", 3)
    fake.delete_issue(keys[1])
    second = await cloud.sync.sync_project("PROJ", trigger="manual")
    assert (second.kind, second.deleted) == ("incremental", 1)
    assert await cloud.keys() == [keys[0], keys[2]]
    # The missing endpoint is asked once, not on every run.
    assert len(fake.requests_to("/search/approximate-count")) == 1
    id_listings = [r for r in fake.requests_to("/search/jql") if r.query.get("fields") == ["id"]]
    assert len(id_listings) == 1


async def test_numeric_updated_from_a_real_cloud_payload_is_read(cloud: Mirror) -> None:
    raw = load_json("jira/cloud-v3/issue.json")
    assert raw["fields"]["updated"] == 1
    key = cloud.fake.add_issue_payload(raw, keep_updated=True)
    result = await cloud.sync.sync_project(raw["fields"]["project"]["key"], trigger="manual")
    assert result.created == 1
    stored = await tickets.get_ticket(cloud.db, key)
    assert stored is not None and stored.updated_ms == 1000  # seconds since the epoch


async def test_epoch_milliseconds_are_read_as_such(mirror: Mirror) -> None:
    key = mirror.fake.add_issue("PROJ", "ms")
    mirror.fake.issue(key).rendered_updated = 1_764_000_000_123
    await mirror.sync.sync_project("PROJ", trigger="manual")
    stored = await tickets.get_ticket(mirror.db, key)
    assert stored is not None and stored.updated_ms == 1_764_000_000_123


async def test_an_unreadable_issue_is_skipped_and_the_others_stored(mirror: Mirror) -> None:
    fake = mirror.fake
    good = fake.add_issue("PROJ", "fine")
    bad = fake.add_issue("PROJ", "broken")
    fake.issue(bad).rendered_updated = "sometime last week"
    result = await mirror.sync.sync_project("PROJ", trigger="manual")
    assert (result.seen, result.created) == (2, 1)
    assert await mirror.keys() == [good]
    fake.issue(bad).rendered_updated = None
    full = await mirror.sync.sync_project("PROJ", trigger="manual", full=True)
    assert (full.created, full.deleted) == (1, 0)


async def test_sync_all_records_a_project_that_cannot_start_and_runs_the_others(
    database_url: str, tmp_path: Path, fake_jira: FakeJira
) -> None:
    mirror = await open_mirror(
        database_url, fake_jira, SystemClock(), jql_filter="project in (bad-key, PROJ)"
    )
    fake_jira.add_issue("PROJ", "one")
    results = await mirror.sync.sync_all(trigger="schedule")
    assert [(r.project, r.created) for r in results] == [("PROJ", 1)]
    runs = await jira_sync.recent_runs(mirror.db)
    assert [(r.project, r.kind, r.status) for r in runs] == [
        ("PROJ", "full", "complete"),
        ("BAD-KEY", "start", "failed"),
    ]
    assert "not a Jira project key" in (runs[1].error or "")
    assert [e["project"] for e in await mirror.events("sync_error")] == ["BAD-KEY"]
    mirror.client.close()
    await mirror.db.close()


async def test_a_failure_to_list_projects_is_recorded_and_announced(
    database_url: str, tmp_path: Path, fake_jira: FakeJira
) -> None:
    mirror = await open_mirror(database_url, fake_jira, SystemClock())
    await mirror.client.connect()
    fake_jira.throttle(retry_after=0, times=6)  # GET /project: 429 until the retries run out
    assert await mirror.sync.sync_all(trigger="schedule") == []
    runs = await jira_sync.recent_runs(mirror.db)
    assert [(r.project, r.kind, r.status) for r in runs] == [("*", "projects", "failed")]
    assert "cannot list projects" in (runs[0].error or "")
    rows = await mirror.db.fetchall("SELECT stream FROM events WHERE type = 'sync_error'")
    assert [row[0] for row in rows] == ["jira:*"]
    mirror.client.close()
    await mirror.db.close()


async def test_a_forced_full_sync_reports_only_what_changed(mirror: Mirror) -> None:
    fake = mirror.fake
    keys = [fake.add_issue("PROJ", f"n{n}") for n in range(3)]
    fake.link(keys[0], keys[1])
    fake.add_attachment(keys[2], "log.txt", content=b"x")
    await mirror.sync.sync_project("PROJ", trigger="manual")
    batches = len(await mirror.events("tickets_updated"))
    unchanged = await mirror.sync.sync_project("PROJ", trigger="manual", full=True)
    assert (unchanged.seen, unchanged.created, unchanged.updated) == (3, 0, 0)
    assert len(await mirror.events("tickets_updated")) == batches
    fake.update_issue(keys[1], summary="renamed")
    changed = await mirror.sync.sync_project("PROJ", trigger="manual", full=True)
    assert changed.updated == 1
    assert (await mirror.events("tickets_updated"))[-1]["keys"] == [keys[1]]


async def test_a_refused_refresh_never_deletes_a_live_ticket(mirror: Mirror) -> None:
    key = mirror.fake.add_issue("PROJ", "alive")
    await mirror.sync.sync_project("PROJ", trigger="manual")
    broken_scope = JiraSync(
        db=mirror.db,
        bus=mirror.bus,
        clock=SystemClock(),
        client=mirror.client,
        jql_filter="nosuchfield = 1",
    )
    with pytest.raises(JiraBadRequest, match="nosuchfield"):
        await broken_scope.refresh_issue(mirror.fake.issue(key).id)
    assert await mirror.keys() == [key]


async def test_a_refresh_of_a_deleted_issue_forgets_it(mirror: Mirror) -> None:
    key = mirror.fake.add_issue("PROJ", "soon gone")
    issue_id = mirror.fake.issue(key).id
    await mirror.sync.sync_project("PROJ", trigger="manual")
    assert await mirror.keys() == [key]
    mirror.fake.delete_issue(key)
    assert await mirror.sync.refresh_issue(issue_id) == key
    assert await mirror.keys() == []
