"""Three `python -m bot` processes on one PostgreSQL database (issue 13, "Must show").

Signed deliveries go round-robin to all three; mid-burst the instance running a pipeline step
is SIGKILLed, and started again once another instance has taken its step over (after the
lease). GitHub redelivers what was refused, and some of what was accepted. Read back from the
database: every accepted delivery processed once; the review batch (its comments sent to
different instances) worked once, one reply per comment on the GitHub fake; the killed step
interrupted once and resumed once, elsewhere, the pipeline opening one pull request; and a
WebSocket client on each instance saw every stored event, in id order, none twice (the killed
instance's client resuming with `since` after its restart).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bot.clock import ManualClock
from bot.config import Settings
from storage import deliveries, pipelines
from storage.database import Database
from tests.bot_process import BotProcess
from tests.conftest import StartApp
from tests.fakes.anthropic import FakeAnthropic
from tests.fakes.github import FakeGitHub
from tests.fakes.jira import FakeJira
from tests.helpers import github_headers
from tests.pipelines.bot_process import Api, make_pipeline
from tests.pipelines.test_pipeline_crash import implementer_requests, script_implementer
from tests.pipelines.world import INSTALLATION, PROJECT, REPO, PipelineModel, done
from tests.postgres_server import PostgresServer, postgres_bindir
from tests.reviews_agent_scenario import AgentScenario, make_pr_remote, report
from tests.scale_out_world import EventFeed, Fleet, instance_environment, until
from tests.test_crash_recovery import delivery_bodies

pytestmark = pytest.mark.skipif(
    postgres_bindir() is None,
    reason="PostgreSQL's initdb and pg_ctl are missing (Debian: apt install postgresql)",
)

NAMES = ("i1", "i2", "i3")
BURST = 150


@pytest.fixture
def shared_database(postgres_server: PostgresServer) -> Iterator[str]:
    """A fresh migrated database of the test's own, dropped afterwards."""
    url = postgres_server.fresh_database()
    yield url
    postgres_server.drop(url)


@pytest.fixture
async def github(app_key: tuple[str, str]) -> AsyncIterator[FakeGitHub]:
    """The GitHub fake on the real clock: the instances keep real time."""
    fake = FakeGitHub(app_id=4242, public_key_pem=app_key[1])
    fake.installations[INSTALLATION] = {"repositories": [REPO]}
    await fake.start()
    yield fake
    await fake.close()


@pytest.fixture
def fleet(
    tmp_path: Path,
    shared_database: str,
    github: FakeGitHub,
    app_key: tuple[str, str],
    fake_jira: FakeJira,
    model: FakeAnthropic,
) -> Iterator[Fleet]:
    """Three instances on the shared database, not started yet; stopped at the end."""
    instances = {}
    for name in NAMES:
        home = tmp_path / name
        home.mkdir()
        environment = instance_environment(
            home, name, shared_database, github, app_key, fake_jira, model
        )
        instances[name] = BotProcess(environment, home / "server.log")
    running = Fleet(instances)
    yield running
    running.stop()


@pytest.fixture
async def shared(shared_database: str) -> AsyncIterator[Database]:
    """The test's own connections to the database the instances share."""
    db = await Database.open(shared_database)
    try:
        yield db
    finally:
        await db.close()


class Sender:
    """Signed deliveries as GitHub sends them, to the instance named or round-robin."""

    def __init__(self, session: aiohttp.ClientSession, fleet: Fleet) -> None:
        self.session = session
        self.fleet = fleet
        self.turns = itertools.cycle(NAMES)

    async def post(self, event: str, body: bytes, delivery_id: str, to: str = "") -> int | None:
        """The answer's status; None when the instance is down (refused or cut off)."""
        base = self.fleet[to or next(self.turns)].base
        headers = github_headers(event, body, delivery_id=delivery_id)
        try:
            async with self.session.post(
                f"{base}/webhooks/github", data=body, headers=headers
            ) as r:
                return r.status
        except (TimeoutError, aiohttp.ClientError):
            return None

    async def payload(self, event: str, payload: dict[str, Any], to: str) -> None:
        body = json.dumps(payload).encode()
        assert await self.post(event, body, str(uuid.uuid4()), to) == 202


async def events_of(db: Database, kind: str) -> list[dict[str, Any]]:
    rows = await db.fetchall("SELECT data FROM events WHERE type = ? ORDER BY id", (kind,))
    return [json.loads(row[0]) for row in rows]


async def pipeline_holder(db: Database, pipeline_id: int) -> str | None:
    """The instance that claimed the pipeline last (migration 0013's `claimed_by`)."""
    return await db.fetchval("SELECT claimed_by FROM pipelines WHERE id = ?", (pipeline_id,))


def review_world(tmp_path: Path, start_app: StartApp, github: FakeGitHub) -> AgentScenario:
    """biagent's pull request #2 with a bare repository behind it, which the pipeline's ticket
    is linked to as well (one repository, one remote, `main` its default branch); the payloads
    on the real clock (the scenario's app is never started: the instances are the app)."""
    base = tmp_path / "remote"
    base.mkdir()
    scenario = AgentScenario(
        start_app=start_app,
        settings=Settings(),
        fake=github,
        clock=ManualClock(datetime.now(UTC)),
        model=FakeAnthropic(),
        remote=make_pr_remote(base),
    )
    scenario.repository["default_branch"] = "main"
    for side in ("head", "base"):
        scenario.pull_request[side]["repo"]["default_branch"] = "main"
    github.add_pull_request(REPO, scenario.pull_request)
    github.serve_repository(REPO, scenario.remote.bare)
    return scenario


async def start_pipeline(
    session: aiohttp.ClientSession, fleet: Fleet, jira: FakeJira, clone_url: str
) -> int:
    key = jira.add_issue(PROJECT, "Greeting is wrong in production", labels=("oncall",))
    api = Api(session, fleet[NAMES[0]])
    return await make_pipeline(api, key, clone_url, cycle_type="oncall_bug")


async def test_three_instances_work_everything_once_through_a_kill(
    tmp_path: Path,
    start_app: StartApp,
    fleet: Fleet,
    shared: Database,
    github: FakeGitHub,
    model: FakeAnthropic,
    fake_jira: FakeJira,
) -> None:
    pipeline_model = PipelineModel(model)
    script_implementer(pipeline_model)  # its second turn answers after 30 s: the kill lands in it
    review = review_world(tmp_path, start_app, github)
    comments = [review.review_comment(text) for text in ("Rename this.", "Add a test.")]
    comment_ids = [payload["comment"]["id"] for payload in comments]
    outcomes = [(n, "declined", "Kept: the name says what it holds.") for n in comment_ids]
    pipeline_model.script("review_response", report(outcomes), done())
    bodies = delivery_bodies()[:BURST]

    async with aiohttp.ClientSession() as session:
        await fleet.start(session)
        feeds = await open_feeds(session, fleet)
        pipeline_id = await start_pipeline(session, fleet, fake_jira, review.remote.url)

        before_kill = await implementer_mid_turn(model, fleet)
        steps = await pipelines.list_steps(shared, pipeline_id)
        [killed_step] = [step for step in steps if step.status == "running"]
        victim = await pipeline_holder(shared, pipeline_id)
        assert victim in NAMES

        sender = Sender(session, fleet)
        await open_and_review(sender, fleet, shared, review, comments)
        accepted = await burst_with_a_kill(sender, fleet, bodies, victim)
        resumed_by = await restart_after_takeover(session, fleet, shared, pipeline_id, victim)
        feeds[victim].follow()  # resumes from the last id it saw, on the restarted instance
        await feeds[victim].connected()
        await redeliver(sender, bodies, accepted)
        await settle(fleet, shared, pipeline_id, review, len(comment_ids))
        stored_ids = await caught_up(fleet, shared, feeds)

    stored = await shared.fetchall("SELECT delivery_id FROM deliveries")
    assert accepted <= {row[0] for row in stored}, "an accepted delivery was lost"
    await check_deliveries_done_once(shared)
    await check_step_resumed_once(shared, pipeline_id, killed_step.id, github)
    resumed = [r for r in implementer_requests(model) if len(r.messages) > len(before_kill)]
    sent_again = resumed[0].messages[: len(before_kill)]
    assert without_cache_marks(sent_again) == without_cache_marks(before_kill)
    assert resumed_by not in (victim, None)
    assert sorted(reply["in_reply_to_id"] for reply in review.replies()) == sorted(comment_ids)
    batches = await shared.fetchall("SELECT status FROM review_batches")
    assert [row[0] for row in batches] == ["done"]
    assert len(pipeline_model.requests_of("review_response")) == 2  # one run: report, end
    check_feeds(feeds, stored_ids, victim)


async def implementer_mid_turn(model: FakeAnthropic, fleet: Fleet) -> list[dict[str, Any]]:
    """Until the implementer's slow second turn is under way; the messages it was sent."""

    async def second_turn_sent() -> bool:
        return len(implementer_requests(model)) >= 2

    await until(second_turn_sent, "the implementer's slow turn", fleet)
    return implementer_requests(model)[-1].messages


async def redeliver(sender: Sender, bodies: list[tuple[str, bytes]], accepted: set[str]) -> None:
    """GitHub redelivers what failed, and here every fifth accepted one again too."""
    again = [(d, b) for n, (d, b) in enumerate(bodies) if d not in accepted or n % 5 == 0]
    statuses = await asyncio.gather(
        *(sender.post("installation_repositories", b, d) for d, b in again)
    )
    assert set(statuses) == {202}


def check_feeds(feeds: dict[str, EventFeed], stored_ids: list[int], victim: str) -> None:
    """Each client saw every stored event up to its last, in id order, once; the killed
    instance's client over two connections."""
    for name, feed in feeds.items():
        assert feed.problems == [], name
        seen_until = [n for n in stored_ids if n <= feed.ids[-1]]
        assert feed.ids == seen_until, f"{name}: not every event, in id order, once"
    assert feeds[victim].connections == 2


async def open_feeds(session: aiohttp.ClientSession, fleet: Fleet) -> dict[str, EventFeed]:
    """A WebSocket client on each instance, following every stream from the start."""
    feeds = {name: EventFeed(session, fleet[name]) for name in NAMES}
    for feed in feeds.values():
        feed.follow()
    await asyncio.gather(*(feed.connected() for feed in feeds.values()))
    return feeds


async def open_and_review(
    sender: Sender,
    fleet: Fleet,
    shared: Database,
    review: AgentScenario,
    comments: list[dict[str, Any]],
) -> None:
    """The pull request opened on the first instance; once that is worked (as on GitHub: a
    pull request opens well before its review), one comment to each of the other two."""
    await sender.payload("pull_request", review.opened(), NAMES[0])

    async def pull_request_known() -> bool:
        return await deliveries.count_by_status(shared) == {"done": 1}

    await until(pull_request_known, "the pull request's opening worked", fleet)
    for name, payload in zip(NAMES[1:], comments, strict=True):
        await sender.payload("pull_request_review_comment", payload, name)


async def burst_with_a_kill(
    sender: Sender, fleet: Fleet, bodies: list[tuple[str, bytes]], victim: str
) -> set[str]:
    """The burst round-robin, `victim` SIGKILLed when half is accepted; the accepted ids."""
    accepted: set[str] = set()
    semaphore = asyncio.Semaphore(12)

    async def send_once(delivery_id: str, body: bytes) -> None:
        async with semaphore:
            if await sender.post("installation_repositories", body, delivery_id) == 202:
                accepted.add(delivery_id)
            if len(accepted) == BURST // 2 and fleet[victim].alive():
                fleet[victim].kill()

    await asyncio.gather(*(send_once(d, b) for d, b in bodies))
    assert not fleet[victim].alive()
    assert BURST // 2 <= len(accepted) < BURST
    return accepted


async def restart_after_takeover(
    session: aiohttp.ClientSession, fleet: Fleet, shared: Database, pipeline_id: int, victim: str
) -> str | None:
    """Once another instance has taken the killed step over (after the lease), the victim
    starts again; who took it."""

    async def taken_over() -> bool:
        holder = await pipeline_holder(shared, pipeline_id)
        interrupted = await events_of(shared, "step_interrupted")
        return holder not in (victim, None) and bool(interrupted)

    await until(taken_over, f"the pipeline taken over from {victim}", fleet)
    taker = await pipeline_holder(shared, pipeline_id)
    await fleet.start(session, victim)
    return taker


async def settle(
    fleet: Fleet, shared: Database, pipeline_id: int, review: AgentScenario, comments: int
) -> None:
    """Until every delivery is done, the pipeline's pull request open, each comment answered."""

    async def deliveries_done() -> bool:
        return await deliveries.count_by_status(shared) == {"done": BURST + 1 + comments}

    async def pull_request_open() -> bool:
        pipeline = await pipelines.get_pipeline(shared, pipeline_id)
        assert pipeline is not None and pipeline.status not in ("failed", "cancelled"), (
            f"{pipeline!r}\n{fleet.logs()}"
        )
        return pipeline.status == "waiting_for_review"

    async def comments_answered() -> bool:
        return len(review.replies()) >= comments

    await until(deliveries_done, "every delivery done", fleet)
    await until(pull_request_open, "the pipeline's pull request open", fleet)
    await until(comments_answered, "a reply to each review comment", fleet)


async def caught_up(fleet: Fleet, shared: Database, feeds: dict[str, EventFeed]) -> list[int]:
    """Until each client has had the newest stored event; then every stored id."""
    newest = await shared.fetchval("SELECT MAX(id) FROM events")

    async def every_feed_there() -> bool:
        return all(feed.ids and feed.ids[-1] >= newest for feed in feeds.values())

    await until(every_feed_there, "every WebSocket client at the newest event", fleet)
    for feed in feeds.values():
        await feed.close()
    return [row[0] for row in await shared.fetchall("SELECT id FROM events ORDER BY id")]


def without_cache_marks(value: Any) -> Any:
    """The conversation as sent, without the prompt-cache breakpoints (they move each turn)."""
    if isinstance(value, dict):
        return {k: without_cache_marks(v) for k, v in value.items() if k != "cache_control"}
    if isinstance(value, list):
        return [without_cache_marks(item) for item in value]
    return value


async def check_deliveries_done_once(db: Database) -> None:
    """Each delivery done, announced done once, its repository added once."""
    assert await deliveries.count_by_status(db) == {"done": BURST + 3}
    announced = Counter(
        event["delivery_pk"]
        for event in await events_of(db, "delivery_processed")
        if event["status"] == "done"
    )
    assert len(announced) == BURST + 3 and set(announced.values()) == {1}
    added = await db.fetchall("SELECT full_name FROM installation_repositories")
    assert sorted(row[0] for row in added) == sorted(f"octo/r{n}" for n in range(BURST))


async def check_step_resumed_once(
    db: Database, pipeline_id: int, step_id: int, github: FakeGitHub
) -> None:
    interrupted = await events_of(db, "step_interrupted")
    assert [event["step_id"] for event in interrupted] == [step_id]
    steps = await pipelines.list_steps(db, pipeline_id)
    assert {step.status for step in steps} == {"completed"}
    assert len(github.opened_pulls) == 1
