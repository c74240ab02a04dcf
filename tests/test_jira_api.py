"""/api/tickets through the real app on loopback, synced from the JIRA protocol fake."""

from __future__ import annotations

import asyncio
import tracemalloc
from pathlib import Path

from bot.clock import ManualClock
from tests.conftest import AppClient, StartApp
from tests.fakes.jira import FakeJira
from tests.helpers import auth_headers, jira_settings, make_settings
from web.keys import SERVICES


async def synced_app(
    start_app: StartApp, tmp_path: Path, fake: FakeJira, **options: object
) -> AppClient:
    client = await start_app(jira_settings(tmp_path, fake, **options))
    response = await client.post(
        "/api/tickets/sync", json={"project": "PROJ", "wait": True}, headers=auth_headers()
    )
    assert response.status == 200, await response.text()
    return client


async def test_sync_through_the_api_then_list_filter_search_and_page(
    start_app: StartApp, tmp_path: Path, fake_jira: FakeJira
) -> None:
    fake_jira.add_issue("PROJ", "Checkout page crashes", status="In Progress", assignee="Ann Lee")
    fake_jira.add_issue("PROJ", "Order flow broken", description="the checkout total is wrong")
    fake_jira.add_issue("PROJ", "Update docs", labels=("docs",))
    client = await synced_app(start_app, tmp_path, fake_jira)

    async def keys(query: str) -> list[str]:
        response = await client.get(f"/api/tickets?{query}", headers=auth_headers())
        assert response.status == 200
        return [ticket["key"] for ticket in (await response.json())["tickets"]]

    assert await keys("") == ["PROJ-3", "PROJ-2", "PROJ-1"]
    assert await keys("status=In+Progress") == ["PROJ-1"]
    assert await keys("assignee=Ann+Lee") == ["PROJ-1"]
    assert await keys("label=docs") == ["PROJ-3"]
    assert await keys("q=CHECKOUT") == ["PROJ-2", "PROJ-1"]
    page = await client.get("/api/tickets?limit=2&offset=1", headers=auth_headers())
    body = await page.json()
    assert ([t["key"] for t in body["tickets"]], body["total"], body["next_offset"]) == (
        ["PROJ-2", "PROJ-1"],
        3,
        None,
    )


async def test_one_ticket_and_its_related_tickets(
    start_app: StartApp, tmp_path: Path, fake_jira: FakeJira
) -> None:
    epic = fake_jira.add_issue("PROJ", "The epic")
    child = fake_jira.add_issue("PROJ", "A sub-task", parent=epic)
    blocked = fake_jira.add_issue("PROJ", "Blocked one")
    fake_jira.link(epic, blocked, "Blocks")
    fake_jira.link(fake_jira.add_issue("OPS", "Outside"), epic, "Relates")
    client = await synced_app(start_app, tmp_path, fake_jira)

    one = await (await client.get(f"/api/tickets/{epic}", headers=auth_headers())).json()
    assert (one["summary"], one["subtasks"]) == ("The epic", [child])
    assert sorted(link["relation"] for link in one["links"]) == ["blocks", "relates to"]
    related = await (
        await client.get(f"/api/tickets/{blocked}/related", headers=auth_headers())
    ).json()
    assert [(link["relation"], link["key"], link["mirrored"]) for link in related["links"]] == [
        ("is blocked by", epic, True)
    ]
    of_epic = await (
        await client.get(f"/api/tickets/{epic}/related", headers=auth_headers())
    ).json()
    assert [s["key"] for s in of_epic["subtasks"]] == [child]
    assert {(link["key"], link["mirrored"]) for link in of_epic["links"]} == {
        (blocked, True),
        ("OPS-1", False),
    }
    missing = await client.get("/api/tickets/PROJ-999", headers=auth_headers())
    assert missing.status == 404
    assert (await missing.json())["error"]["code"] == "not_found"


async def test_stats_count_tickets_and_report_the_last_sync(
    start_app: StartApp, tmp_path: Path, fake_jira: FakeJira
) -> None:
    fake_jira.add_issue("PROJ", "a", status="Done")
    fake_jira.add_issue("PROJ", "b")
    client = await synced_app(start_app, tmp_path, fake_jira)
    stats = await (await client.get("/api/tickets/stats", headers=auth_headers())).json()
    assert stats["total"] == 2
    assert stats["by_status"] == {"Done": 1, "To Do": 1}
    assert stats["sync"]["latest"]["PROJ"]["status"] == "complete"


async def test_a_second_sync_of_a_project_is_409_while_one_runs(
    start_app: StartApp, tmp_path: Path, fake_jira: FakeJira
) -> None:
    client = await start_app(jira_settings(tmp_path, fake_jira))
    jira = client.app[SERVICES].jira
    assert jira is not None
    job = await jira.sync.begin("PROJ", trigger="manual")
    response = await client.post(
        "/api/tickets/sync", json={"project": "PROJ"}, headers=auth_headers()
    )
    assert response.status == 409
    assert (await response.json())["error"]["code"] == "sync_running"
    await job.run()
    response = await client.post(
        "/api/tickets/sync", json={"project": "PROJ"}, headers=auth_headers()
    )
    assert response.status == 202
    assert (await response.json())["runs"][0]["kind"] == "incremental"


async def test_sync_without_jira_configured_is_503(client: AppClient) -> None:
    response = await client.post("/api/tickets/sync", headers=auth_headers())
    assert response.status == 503


async def test_routes_need_the_api_token(start_app: StartApp, tmp_path: Path) -> None:
    client = await start_app(make_settings(tmp_path))
    assert (await client.get("/api/tickets")).status == 401
    assert (await client.get("/api/tickets/PROJ-1/attachments/1")).status == 401


async def test_an_attachment_is_proxied_with_its_type_as_a_download(
    start_app: StartApp, tmp_path: Path, fake_jira: FakeJira
) -> None:
    key = fake_jira.add_issue("PROJ", "with a page")
    attachment = fake_jira.add_attachment(
        key, "report <1>.html", mime_type="text/html", content=b"<script>alert(1)</script>"
    )
    client = await synced_app(start_app, tmp_path, fake_jira)
    response = await client.get(
        f"/api/tickets/{key}/attachments/{attachment}", headers=auth_headers()
    )
    assert response.status == 200
    assert await response.read() == b"<script>alert(1)</script>"
    assert response.headers["Content-Type"].startswith("text/html")
    assert response.headers["Content-Disposition"].startswith(
        'attachment; filename="report _1_.html"'
    )
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert "sandbox" in response.headers["Content-Security-Policy"]
    other = await client.get(f"/api/tickets/{key}/attachments/4242", headers=auth_headers())
    assert other.status == 404


async def test_a_50_mb_attachment_streams_with_flat_memory(
    start_app: StartApp, tmp_path: Path, fake_jira: FakeJira
) -> None:
    size = 50 * 1024 * 1024
    key = fake_jira.add_issue("PROJ", "a big log")
    attachment = fake_jira.add_attachment(key, "big.log", size=size)
    client = await synced_app(start_app, tmp_path, fake_jira)
    tracemalloc.start()
    try:
        response = await client.get(
            f"/api/tickets/{key}/attachments/{attachment}", headers=auth_headers()
        )
        assert response.status == 200
        assert response.headers["Content-Length"] == str(size)
        received = 0
        async for chunk in response.content.iter_chunked(256 * 1024):
            received += len(chunk)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert received == size
    assert peak < 4 * 1024 * 1024, f"peak {peak / 1e6:.1f} MB while streaming 50 MB"


async def test_an_attachment_over_the_limit_is_413(
    start_app: StartApp, tmp_path: Path, fake_jira: FakeJira
) -> None:
    key = fake_jira.add_issue("PROJ", "a huge file")
    attachment = fake_jira.add_attachment(key, "huge.bin", size=200 * 1024 * 1024)
    client = await synced_app(start_app, tmp_path, fake_jira)
    response = await client.get(
        f"/api/tickets/{key}/attachments/{attachment}", headers=auth_headers()
    )
    assert response.status == 413
    assert not [r for r in fake_jira.requests if "/secure/attachment/" in r.path]


async def test_the_scheduled_sync_runs_every_interval_over_the_projects_in_scope(
    start_app: StartApp, tmp_path: Path, fake_jira: FakeJira
) -> None:
    fake_jira.add_issue("PROJ", "in scope")
    fake_jira.add_issue("OPS", "not in scope")
    client = await start_app(
        jira_settings(tmp_path, fake_jira, jira_jql="project = PROJ", jira_sync_interval=120.0)
    )
    jira = client.app[SERVICES].jira
    assert jira is not None and jira.scheduler is not None
    job = jira.scheduler.job("jira-sync")  # one loop per job: never two runs at once
    assert job is not None and job.every_s == 120
    assert not job.run_at_start  # JIRA_SYNC_AT_START=0 in the tests' settings
    results = await jira.scheduled_sync()
    assert [(r.project, r.kind, r.created) for r in results] == [("PROJ", "full", 1)]
    listed = await (await client.get("/api/tickets", headers=auth_headers())).json()
    assert [t["key"] for t in listed["tickets"]] == ["PROJ-1"]
    stats = await (await client.get("/api/tickets/stats", headers=auth_headers())).json()
    assert stats["sync"]["latest"]["PROJ"]["trigger"] == "schedule"


async def test_the_scheduled_sync_runs_when_the_injected_clock_passes_the_interval(
    start_app: StartApp, tmp_path: Path, fake_jira: FakeJira, manual_clock: ManualClock
) -> None:
    fake_jira.add_issue("PROJ", "in scope")
    client = await start_app(
        jira_settings(tmp_path, fake_jira, jira_jql="project = PROJ", jira_sync_interval=120.0),
        clock=manual_clock,
    )
    subscription = client.app[SERVICES].bus.subscribe(["jira:PROJ"])
    await manual_clock.advance(119.0)
    assert not [r for r in fake_jira.requests if "/search" in r.path]
    await manual_clock.advance(1.0)
    async with asyncio.timeout(10):
        while "sync_complete" not in [frame.type for frame in await subscription.next_batch()]:
            assert not subscription.overflowed
    assert [r for r in fake_jira.requests if "/search" in r.path]  # the search the sync made
    stats = await (await client.get("/api/tickets/stats", headers=auth_headers())).json()
    assert stats["sync"]["latest"]["PROJ"]["trigger"] == "schedule"


async def test_an_attachment_named_under_another_host_is_fetched_from_jira_url(
    start_app: StartApp, tmp_path: Path, fake_jira: FakeJira
) -> None:
    fake_jira.base_url = "http://jira.internal.invalid:8080"  # Jira's own name, behind a proxy
    key = fake_jira.add_issue("PROJ", "with a log")
    attachment = fake_jira.add_attachment(key, "app.log", content=b"line one\n" * 1000)
    client = await synced_app(start_app, tmp_path, fake_jira)
    stored = await client.get(f"/api/tickets/{key}", headers=auth_headers())
    assert (await stored.json())["attachments"][0]["id"] == attachment
    response = await client.get(
        f"/api/tickets/{key}/attachments/{attachment}", headers=auth_headers()
    )
    assert response.status == 200
    assert response.headers["Content-Length"] == str(9000)
    assert await response.read() == b"line one\n" * 1000
    (download,) = [r for r in fake_jira.requests if r.path.startswith("/secure/attachment/")]
    assert download.headers["Accept-Encoding"] == "identity"


async def test_a_failed_start_releases_the_projects_already_begun(
    start_app: StartApp, tmp_path: Path, fake_jira: FakeJira
) -> None:
    fake_jira.add_issue("PROJ", "one")
    client = await start_app(
        jira_settings(tmp_path, fake_jira, jira_jql="project in (PROJ, bad-key)")
    )
    response = await client.post("/api/tickets/sync", json={}, headers=auth_headers())
    assert response.status == 400
    assert "not a Jira project key" in (await response.json())["error"]["message"]
    again = await client.post(
        "/api/tickets/sync", json={"project": "PROJ", "wait": True}, headers=auth_headers()
    )
    assert again.status == 200, await again.text()
    assert (await again.json())["runs"][0]["created"] == 1
    stats = await (await client.get("/api/tickets/stats", headers=auth_headers())).json()
    assert [(r["project"], r["status"]) for r in stats["sync"]["recent"]] == [
        ("PROJ", "complete"),
        ("PROJ", "failed"),
    ]


async def test_a_failing_project_in_a_waited_sync_is_reported_not_500(
    start_app: StartApp, tmp_path: Path, fake_jira: FakeJira
) -> None:
    fake_jira.add_issue("PROJ", "one")
    client = await start_app(jira_settings(tmp_path, fake_jira, jira_jql="nosuchfield = 1"))
    response = await client.post(
        "/api/tickets/sync", json={"project": "PROJ", "wait": True}, headers=auth_headers()
    )
    assert response.status == 200
    (run,) = (await response.json())["runs"]
    assert run["project"] == "PROJ" and "nosuchfield" in run["error"]
