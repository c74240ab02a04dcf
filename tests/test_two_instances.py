"""Two instances of the real app on one PostgreSQL database (issue 13, work claimed once): a
burst of deliveries sent to both is dispatched once in total, a review batch that falls due
on both is worked once with one reply per comment, and a pipeline whose instance died mid-step
is resumed once, by one of them, only after its lease ran out."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from pathlib import Path

import pytest

from bot.clock import ManualClock
from bot.config import Settings
from bot.pipelines.states import PipelineStatus, StepStatus
from storage import claims, cycle_types, pipelines
from storage.claims import Lease
from storage.database import Database
from tests.conftest import StartApp
from tests.fakes.github import FakeGitHub
from tests.fakes.review_engine import ScriptedEngine
from tests.helpers import github_headers, make_settings
from tests.reviews_scenario import Scenario, review_settings
from tests.test_crash_recovery import delivery_bodies
from web.keys import REVIEW_SCHEDULER

pytestmark = pytest.mark.parametrize("database_engine", ["postgresql"], indirect=True)

DEADLINE_S = 30.0  # a bound for a loaded machine, not an expected time
BURST = 120


def instance_settings(tmp_path: Path, database_url: str, name: str) -> Settings:
    home = tmp_path / name
    home.mkdir()
    return make_settings(home, database_url=database_url, instance_id=name)


@pytest.fixture
async def shared(database_url: str) -> AsyncIterator[Database]:
    """The test's own connections to the database both instances use."""
    db = await Database.open(database_url)
    try:
        yield db
    finally:
        await db.close()


async def until(condition: Callable[[], Awaitable[bool]], what: str) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not await condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {DEADLINE_S}s: {what}")
        await asyncio.sleep(0.05)


async def events_of(db: Database, kind: str) -> list[dict[str, object]]:
    rows = await db.fetchall("SELECT data FROM events WHERE type = ? ORDER BY id", (kind,))
    return [json.loads(row[0]) for row in rows]


async def test_a_burst_sent_to_two_instances_is_dispatched_once_in_total(
    start_app: StartApp, tmp_path: Path, database_url: str, shared: Database
) -> None:
    apps = [await start_app(instance_settings(tmp_path, database_url, name)) for name in ("a", "b")]

    async def send(n: int, delivery_id: str, body: bytes) -> int:
        headers = github_headers("installation_repositories", body, delivery_id=delivery_id)
        response = await apps[n % 2].post("/webhooks/github", data=body, headers=headers)
        return response.status

    bodies = delivery_bodies()[:BURST]
    statuses = await asyncio.gather(*(send(n, d, b) for n, (d, b) in enumerate(bodies)))
    assert set(statuses) == {202}

    async def all_done() -> bool:
        done = await shared.fetchval("SELECT COUNT(*) FROM deliveries WHERE status = 'done'")
        return int(done) == BURST

    await until(all_done, f"{BURST} deliveries done")
    rows = await shared.fetchall("SELECT id, attempts, claimed_by FROM deliveries")
    assert len(rows) == BURST
    assert {row[1] for row in rows} == {1}, "a delivery was claimed twice"
    assert {row[2] for row in rows} == {"a", "b"}, "each instance dispatches its share"
    announced = Counter(
        data["delivery_pk"] for data in await events_of(shared, "delivery_processed")
    )
    assert set(announced) == {row[0] for row in rows}
    assert set(announced.values()) == {1}, "a delivery was announced twice"
    added = await shared.fetchval("SELECT COUNT(*) FROM installation_repositories")
    assert int(added) == BURST


async def a_pipeline_left_mid_step(db: Database, clock: ManualClock) -> tuple[int, int]:
    """What an instance that died mid-step leaves: a running pipeline, its step running, its
    lease held by that instance until the lease length from now."""
    now = clock.now()
    pipeline = await pipelines.create_pipeline(
        db, ticket_key="ACME-7", repositories=["octo/repo"], trigger="api", created_by=None, now=now
    )
    backend = await cycle_types.get_cycle_type(db, "backend")
    assert backend is not None
    steps = await pipelines.set_cycle_type(
        db, pipeline.id, backend, reason="rule", max_cost_usd=None, now=now
    )
    await db.write_many(
        [
            pipelines.pipeline_status(pipeline.id, PipelineStatus.RUNNING, now=now),
            pipelines.step_status(steps[0].id, StepStatus.RUNNING, now=now),
        ]
    )
    lease = Lease("dead", now, now + timedelta(seconds=Settings().work_lease_seconds))
    assert await claims.claim_one(db, "pipelines", pipeline.id, lease)
    return pipeline.id, steps[0].id


async def test_a_dead_instances_pipeline_is_resumed_once_after_its_lease(
    start_app: StartApp, tmp_path: Path, database_url: str, shared: Database
) -> None:
    clock = ManualClock()
    pipeline_id, step_id = await a_pipeline_left_mid_step(shared, clock)
    for name in ("a", "b"):
        await start_app(instance_settings(tmp_path, database_url, name), clock=clock)
    # Started while the dead instance's lease holds: neither resumes it.
    assert await claims.holder(shared, "pipelines", pipeline_id, now=clock.now()) == "dead"
    assert await events_of(shared, "step_interrupted") == []

    await clock.advance(Settings().work_lease_seconds + 1)

    async def ended() -> bool:
        pipeline = await pipelines.get_pipeline(shared, pipeline_id)
        return pipeline is not None and pipeline.status != PipelineStatus.RUNNING

    await until(ended, "the pipeline taken over and advanced")
    interrupted = await events_of(shared, "step_interrupted")
    assert [event["step_id"] for event in interrupted] == [step_id]
    # The agents are off here: the one instance that resumed it fails it, once.
    failed = await events_of(shared, "pipeline_failed")
    assert [event["pipeline_id"] for event in failed] == [pipeline_id]
    taker = await shared.fetchval("SELECT claimed_by FROM pipelines WHERE id = ?", (pipeline_id,))
    assert taker in ("a", "b")
    assert await claims.holder(shared, "pipelines", pipeline_id, now=clock.now()) is None


async def test_a_batch_due_on_two_instances_is_worked_once(
    start_app: StartApp,
    tmp_path: Path,
    database_url: str,
    fake_github: FakeGitHub,
    app_key: tuple[str, str],
    review_engine: ScriptedEngine,
) -> None:
    settings = dataclasses.replace(
        review_settings(tmp_path, fake_github, app_key), database_url=database_url
    )
    clock = ManualClock()
    first = Scenario(
        start_app=start_app,
        settings=dataclasses.replace(settings, instance_id="a"),
        fake=fake_github,
        clock=clock,
        engine=review_engine,
    )
    a = await first.start()
    b = await start_app(
        dataclasses.replace(settings, instance_id="b", worktree_root=tmp_path / "b"),
        clock=clock,
        review_engine=review_engine,  # one engine: it records the runs of both
    )
    await first.send("pull_request", first.opened())
    ids = []
    for text in ("Rename this variable.", "Add a test for the empty case."):
        payload = first.review_comment(text)
        ids.append(payload["comment"]["id"])
        await first.send("pull_request_review_comment", payload)

    await clock.advance(31)  # the quiet window closes: the batch is due on both
    await asyncio.gather(a.app[REVIEW_SCHEDULER].drain(), b.app[REVIEW_SCHEDULER].drain())

    assert len(review_engine.batches) == 1
    assert sorted(reply["in_reply_to_id"] for reply in first.replies()) == sorted(ids)
    assert len(first.check_runs()) == 1 and len(first.pr_comments()) == 1
    eyes = [r["_comment_id"] for r in fake_github.reactions if r["content"] == "eyes"]
    assert sorted(eyes) == sorted(ids)
    (row,) = await first.db.fetchall("SELECT status, claimed_by, lease_until FROM review_batches")
    assert (row[0], row[1] in ("a", "b"), row[2]) == ("done", True, None)
