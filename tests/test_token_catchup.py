"""Token catch-up by snapshot on /ws: snapshot + tail, the seam with live tokens, expiry and
clean-up on a ManualClock, interrupted streams, and the followed objects' state after replay."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest

from bot.agents.tokens import TokenCoalescer, TokenSequence
from bot.clock import ManualClock
from bot.config import Settings
from bot.housekeeping import Housekeeping
from bot.worktrees.events import WorktreeStatus
from bot.worktrees.states import ProgressKind
from storage import pipelines, pull_requests, token_blocks
from storage.token_blocks import BlockState
from tests.conftest import AppClient, StartApp
from tests.helpers import auth_headers
from tests.test_websocket import connect, next_json
from web.keys import SERVICES

pytestmark = pytest.mark.both_databases

STREAM = "pipeline:1"
NOW = datetime(2026, 11, 24, 15, 40, tzinfo=UTC)


@pytest.fixture
async def app(start_app: StartApp, settings: Settings, manual_clock: ManualClock) -> AppClient:
    return await start_app(settings, clock=manual_clock)


def coalescer(app: AppClient, stream: str = STREAM, **options: Any) -> TokenCoalescer:
    services = app.app[SERVICES]
    return TokenCoalescer(
        TokenSequence(services.db), services.bus, services.clock, stream, **options
    )


async def stream_frames(
    tokens: TokenCoalescer, clock: ManualClock, pieces: Sequence[str], step_s: float = 0.1
) -> None:
    """Each piece one frame, `step_s` of the clock apart (merges come every 0.5 s)."""
    for piece in pieces:
        await tokens.add(piece)
        await tokens.flush()
        await clock.advance(step_s)


async def resume(app: AppClient, *streams: str) -> aiohttp.ClientWebSocketResponse:
    bus = app.app[SERVICES].bus
    return await connect(app, streams=",".join(streams), since=bus.last_id, epoch=bus.epoch)


async def frames_until_live(ws: aiohttp.ClientWebSocketResponse) -> list[dict[str, Any]]:
    frames = []
    while (frame := await next_json(ws)).get("control") != "live":
        frames.append(frame)
    return frames


def block_text(catchup: dict[str, Any]) -> str:
    data = catchup["data"]
    return data["snapshot"]["text"] + "".join(frame["text"] for frame in data["tail"])


def assert_contiguous(catchup: dict[str, Any]) -> None:
    data = catchup["data"]
    seqs = [data["snapshot"]["through_seq"]] + [frame["seq"] for frame in data["tail"]]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
    assert seqs[-1] == data["last_seq"]


async def test_a_resuming_client_gets_the_running_block_as_snapshot_and_tail(
    app: AppClient, manual_clock: ManualClock
) -> None:
    pieces = [f"word{n} " for n in range(23)]
    await stream_frames(coalescer(app), manual_clock, pieces)
    ws = await resume(app, STREAM)
    (catchup,) = await frames_until_live(ws)
    assert (catchup["type"], catchup["id"], catchup["stream"]) == ("token_catchup", None, STREAM)
    data = catchup["data"]
    assert (data["state"], data["block"], data["last_seq"]) == ("running", 1, 23)
    assert data["snapshot"]["through_seq"] >= 18  # merged every 0.5 s: the tail stays short
    assert 1 <= len(data["tail"]) <= 6
    assert_contiguous(catchup)
    assert block_text(catchup) == "".join(pieces)
    await ws.close()


async def test_the_catchup_holds_the_latest_block_only_and_live_frames_name_theirs(
    app: AppClient, manual_clock: ManualClock
) -> None:
    tokens = coalescer(app)
    await stream_frames(tokens, manual_clock, ["an earlier ", "turn."])
    await tokens.end_block(BlockState.COMPLETED)
    await stream_frames(tokens, manual_clock, ["The next ", "turn"])
    ws = await resume(app, STREAM)
    (catchup,) = await frames_until_live(ws)
    assert (catchup["data"]["block"], catchup["data"]["state"]) == (3, "running")
    assert block_text(catchup) == "The next turn"
    await stream_frames(tokens, manual_clock, [" goes on."])
    live = await next_json(ws)
    assert live["type"] == "token"
    assert live["data"] == {"seq": 5, "text": " goes on.", "block": 3}
    await ws.close()


async def test_an_ended_block_says_completed_and_carries_its_whole_text(
    app: AppClient, manual_clock: ManualClock
) -> None:
    tokens = coalescer(app)
    await stream_frames(tokens, manual_clock, ["All ", "done", "."])
    await tokens.end_block(BlockState.COMPLETED)
    ws = await resume(app, STREAM)
    (catchup,) = await frames_until_live(ws)
    data = catchup["data"]
    assert (data["state"], data["snapshot"]["through_seq"], data["tail"]) == ("completed", 3, [])
    assert block_text(catchup) == "All done."
    await ws.close()


async def test_catchup_and_live_tokens_meet_with_no_gap_and_no_duplicate(
    app: AppClient, manual_clock: ManualClock
) -> None:
    """Clients resume while frames are streamed; frames published during their replay are in
    the catch-up and in the live queue, and are sent once. Each client rebuilds the block."""
    bus = app.app[SERVICES].bus
    since = bus.last_id
    for n in range(600):  # a replay long enough for frames to land while it runs
        await bus.publish(STREAM, WorktreeStatus(session_id=str(n), status=ProgressKind.SETUP_DONE))
    pieces = [f"{n} " for n in range(300)]
    resume_at = {count: asyncio.Event() for count in (1, 40, 150, 260)}

    async def produce() -> None:
        tokens = coalescer(app)
        for count, piece in enumerate(pieces, start=1):
            await tokens.add(piece)
            await tokens.flush()
            if count in resume_at:
                resume_at[count].set()
            await manual_clock.advance(0.05)

    producer = asyncio.create_task(produce())
    sockets = []
    for reached in resume_at.values():
        await asyncio.wait_for(reached.wait(), 10)
        sockets.append(await connect(app, streams=STREAM, since=since))
    await producer
    for ws in sockets:
        *replayed, catchup = await frames_until_live(ws)
        assert len(replayed) == 600 and catchup["type"] == "token_catchup"
        assert_contiguous(catchup)
        text, last = block_text(catchup), catchup["data"]["last_seq"]
        while last < len(pieces):
            frame = await next_json(ws)
            assert frame["type"] == "token" and frame["data"]["seq"] == last + 1
            text, last = text + frame["data"]["text"], frame["data"]["seq"]
        assert text == "".join(pieces)
        await ws.close()


async def test_expired_blocks_are_not_sent_and_clean_up_keeps_the_numbering(
    app: AppClient, manual_clock: ManualClock
) -> None:
    services = app.app[SERVICES]
    tokens = coalescer(app, ttl_s=60.0)
    await stream_frames(tokens, manual_clock, ["short ", "lived"])
    await tokens.end_block(BlockState.COMPLETED)
    await manual_clock.advance(59.0)
    assert await frames_until_live(await resume(app, STREAM)) != []  # still kept
    await manual_clock.advance(2.0)
    assert await frames_until_live(await resume(app, STREAM)) == []  # expired: nothing sent
    await Housekeeping(db=services.db, bus=services.bus, clock=manual_clock, events_kept=10).prune()
    assert await services.db.fetchval("SELECT COUNT(*) FROM token_buffer") == 0
    row = await services.db.fetchone("SELECT snapshot, last_seq FROM token_blocks")
    assert tuple(row) == ("", 2)
    assert await TokenSequence(services.db).next(STREAM) == 3  # never back to 1


async def test_a_running_block_outlives_the_expiry_of_its_first_frames(
    app: AppClient, manual_clock: ManualClock
) -> None:
    """Merges renew the block: its snapshot keeps text whose frames expired and were pruned."""
    services = app.app[SERVICES]
    pieces = [f"p{n} " for n in range(40)]
    await stream_frames(coalescer(app, ttl_s=1.0), manual_clock, pieces)
    await Housekeeping(db=services.db, bus=services.bus, clock=manual_clock, events_kept=10).prune()
    url = f"/api/streams/{quote(STREAM, safe='')}/tokens?after=0"
    by_frames = await (await app.get(url, headers=auth_headers())).json()
    assert by_frames["data"]["from_seq"] > 1  # the first frames expired
    assert by_frames["block"] == {"first_seq": 1, "state": "running", "last_seq": 40}
    (catchup,) = await frames_until_live(await resume(app, STREAM))
    assert block_text(catchup) == "".join(pieces)


async def test_a_stream_a_stop_cut_off_is_shown_interrupted_after_the_restart(
    start_app: StartApp, settings: Settings, manual_clock: ManualClock
) -> None:
    first = await start_app(settings, clock=manual_clock)
    await stream_frames(coalescer(first), manual_clock, ["cut ", "off ", "mid"])
    await first.close()
    again = await start_app(settings, clock=manual_clock)
    (catchup,) = await frames_until_live(await resume(again, STREAM))
    assert catchup["data"]["state"] == "interrupted"
    assert block_text(catchup) == "cut off mid"
    assert catchup["data"]["tail"] == []  # merged at start-up


async def test_a_star_subscriber_gets_the_running_blocks_only(
    app: AppClient, manual_clock: ManualClock
) -> None:
    done = coalescer(app, "pipeline:2")
    await stream_frames(done, manual_clock, ["finished"])
    await done.end_block(BlockState.COMPLETED)
    await stream_frames(coalescer(app), manual_clock, ["still going"])
    bus = app.app[SERVICES].bus
    ws = await connect(app, streams="*", since=bus.last_id)
    assert [frame["stream"] for frame in await frames_until_live(ws)] == [STREAM]
    await ws.close()


async def test_after_the_replay_each_followed_object_sends_its_current_state(
    app: AppClient,
) -> None:
    services = app.app[SERVICES]
    pipeline = await pipelines.create_pipeline(
        services.db, ticket_key="ACME-1", repositories=["octo/repo"], trigger="api",
        created_by=None, now=NOW,
    )  # fmt: skip
    await pull_requests.upsert_pull_request(
        services.db, repository="octo/repo", number=7, installation_id=1, github_id=None,
        title="A fix", author_login="a", clone_url="file:///x", head_ref="fix",
        head_sha="a" * 40, base_ref="main", state="open", now=NOW,
    )  # fmt: skip
    since = services.bus.last_id
    event = WorktreeStatus(session_id="1", status=ProgressKind.SETUP_DONE)
    missed = await services.bus.publish(f"pipeline:{pipeline.id}", event)
    ws = await connect(app, streams=f"pipeline:{pipeline.id},pr:octo/repo#7,jira:ACME", since=since)
    replayed, *states = await frames_until_live(ws)
    assert replayed["id"] == missed
    assert [(s["type"], s["stream"], s["id"]) for s in states] == [
        ("state", f"pipeline:{pipeline.id}", None),
        ("state", "pr:octo/repo#7", None),
    ]
    pipeline_state, pr_state = (s["data"] for s in states)
    assert (pipeline_state["kind"], pipeline_state["status"]) == ("pipeline", "created")
    assert pipeline_state["as_of"] == missed and pipeline_state["detail"]["ticket"] == "ACME-1"
    assert (pr_state["kind"], pr_state["status"]) == ("pull_request", "open")
    assert pr_state["detail"]["title"] == "A fix"
    await ws.close()


async def test_a_subscription_without_since_gets_no_catchup_and_no_state(
    app: AppClient, manual_clock: ManualClock
) -> None:
    await stream_frames(coalescer(app), manual_clock, ["before"])
    ws = await connect(app, streams=STREAM)
    assert (await next_json(ws))["control"] == "live"
    await ws.close()


async def test_blocks_a_stop_left_running_are_cut_at_start_up_with_their_tail(
    db: Any, manual_clock: ManualClock
) -> None:
    """Storage level: the tail frames join the snapshot; other blocks are left alone."""
    from bot.events.bus import EventBus

    bus = EventBus(db, manual_clock)
    await bus.start()
    tokens = TokenCoalescer(TokenSequence(db), bus, manual_clock, STREAM)
    await stream_frames(tokens, manual_clock, ["a", "b", "c"], step_s=0.3)
    assert await token_blocks.mark_abandoned(db, now=manual_clock.now()) == 1
    block = await token_blocks.latest(db, STREAM, now=manual_clock.now())
    assert block is not None
    assert (block.state, block.snapshot, block.tail) == ("interrupted", "abc", ())
    assert block.last_seq == 3
    assert await token_blocks.mark_abandoned(db, now=manual_clock.now()) == 0
