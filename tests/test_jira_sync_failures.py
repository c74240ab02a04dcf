"""The JIRA sync when things go wrong, through the real `jira` library against the protocol
fake (Server and Cloud): 429s, concurrent syncs, failures recorded and announced, scope
changes, unreadable issues, and refreshes of refused or deleted issues."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from jira import JIRA

from bot.clock import ManualClock, SystemClock
from bot.jira.client import JiraBadRequest
from bot.jira.sync import JiraSync, SyncAlreadyRunning
from storage import jira_sync, tickets
from tests.fakes.jira import FakeJira
from tests.helpers import load_json
from tests.jira_mirror import (  # noqa: F401  (pytest fixtures, by name)
    Mirror,
    cloud_fixture,
    mirror_fixture,
    open_mirror,
)

pytestmark = pytest.mark.both_databases


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
