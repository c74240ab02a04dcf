"""GET /ws: auth, resume by id with no gap and no duplicate, resync, slow consumers."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import pytest

from bot.agents.events import Token
from bot.worktrees.events import WorktreeStatus
from bot.worktrees.states import ProgressKind
from tests.conftest import AppClient
from tests.helpers import API_TOKEN
from web.keys import SERVICES
from web.ws import CLOSE_SLOW_CONSUMER


async def next_json(ws: aiohttp.ClientWebSocketResponse) -> dict[str, Any]:
    message = await asyncio.wait_for(ws.receive(), 5)
    assert message.type == aiohttp.WSMsgType.TEXT, message
    return json.loads(message.data)


async def connect(client: AppClient, **query: Any) -> aiohttp.ClientWebSocketResponse:
    ws = await client.ws_connect("/ws", params={"token": API_TOKEN, **query})
    hello = await next_json(ws)
    assert hello["control"] == "hello"
    return ws


PROGRESS = ProgressKind.SETUP_OUTPUT


async def publish_many(client: AppClient, count: int, stream: str = "s") -> list[int]:
    bus = client.app[SERVICES].bus
    return [
        await bus.publish(
            stream, WorktreeStatus(session_id=str(n), status=ProgressKind.SETUP_OUTPUT)
        )
        for n in range(count)
    ]


async def collect_until(
    ws: aiohttp.ClientWebSocketResponse, last_id: int
) -> tuple[list[int], list[dict[str, Any]]]:
    ids: list[int] = []
    controls: list[dict[str, Any]] = []
    while not ids or ids[-1] < last_id:
        frame = await next_json(ws)
        if "control" in frame:
            controls.append(frame)
        else:
            ids.append(frame["id"])
    return ids, controls


async def test_websocket_needs_the_token(client: AppClient) -> None:
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await client.ws_connect("/ws")
    assert refused.value.status == 401
    with pytest.raises(aiohttp.WSServerHandshakeError):
        await client.ws_connect("/ws", params={"token": "wrong-token-wrong-token"})


async def test_replays_missed_events_then_goes_live(client: AppClient) -> None:
    ids = await publish_many(client, 5)
    ws = await connect(client)
    await ws.send_json({"action": "subscribe", "streams": "*", "since": ids[1]})
    replayed, _ = await collect_until(ws, ids[-1])
    assert replayed == ids[2:]
    assert (await next_json(ws)) == {"control": "live", "last_id": ids[-1]}
    live = await publish_many(client, 2)
    got, _ = await collect_until(ws, live[-1])
    assert got == live
    await ws.close()


async def test_stream_filter_only_sends_chosen_streams(client: AppClient) -> None:
    ws = await connect(client, streams="pr:octo/repo#1", since=0)
    assert (await next_json(ws))["control"] == "live"
    await publish_many(client, 2, stream="other")
    mine = await publish_many(client, 1, stream="pr:octo/repo#1")
    frame = await next_json(ws)
    assert (frame["id"], frame["stream"], frame["type"]) == (
        mine[0],
        "pr:octo/repo#1",
        "worktree_status",
    )
    assert set(frame) == {"id", "type", "stream", "ts", "data"}
    await ws.close()


async def test_resume_during_a_publish_storm_has_no_gap_and_no_duplicate(
    client: AppClient,
) -> None:
    """Clients subscribe from a past id while events are being published concurrently."""
    first = await publish_many(client, 50)
    stop = asyncio.Event()
    published: list[int] = []
    grew = asyncio.Condition()

    async def storm() -> None:
        while not stop.is_set():
            batch = await publish_many(client, 5)
            async with grew:
                published.extend(batch)
                grew.notify_all()
            await asyncio.sleep(0)

    async def at_least(count: int) -> None:
        async with asyncio.timeout(10), grew:
            await grew.wait_for(lambda: len(published) >= count)

    storm_task = asyncio.create_task(storm())
    sockets = []
    for since in (first[0], first[20], first[-1]):
        ws = await connect(client)
        await ws.send_json({"action": "subscribe", "streams": "*", "since": since})
        sockets.append((since, ws))
        await at_least(len(published) + 5)  # each subscription lands amid the storm
    await at_least(len(published) + 100)
    stop.set()
    await storm_task
    last = published[-1]
    for since, ws in sockets:
        received, controls = await collect_until(ws, last)
        expected = [i for i in first + published if i > since]
        assert received == expected
        assert [c["control"] for c in controls] == ["live"]
        await ws.close()


async def test_reconnect_resumes_from_the_last_id_seen(client: AppClient) -> None:
    ws = await connect(client, since=0)
    assert (await next_json(ws))["control"] == "live"
    before = await publish_many(client, 3)
    seen, _ = await collect_until(ws, before[-1])
    await ws.close()
    missed = await publish_many(client, 4)
    ws = await connect(client, since=seen[-1])
    again, _ = await collect_until(ws, missed[-1])
    assert again == missed
    await ws.close()


@pytest.mark.parametrize(
    ("query", "reason"),
    [({"since": 10_000}, "unknown_id"), ({"since": 0, "epoch": "another-db"}, "epoch_changed")],
)
async def test_unservable_resume_says_resync_required(
    client: AppClient, query: dict[str, Any], reason: str
) -> None:
    await publish_many(client, 2)
    ws = await connect(client, **query)
    frame = await next_json(ws)
    assert frame["control"] == "resync_required"
    assert frame["reason"] == reason
    assert frame["epoch"] == client.app[SERVICES].bus.epoch
    await ws.close()


async def test_resume_from_pruned_history_says_resync_and_sends_nothing(
    client: AppClient,
) -> None:
    ids = await publish_many(client, 10)
    await client.app[SERVICES].bus.prune(keep=3)
    ws = await connect(client, since=ids[2])
    frame = await next_json(ws)
    assert frame == {
        "control": "resync_required",
        "reason": "history_pruned",
        "epoch": client.app[SERVICES].bus.epoch,
        "last_id": ids[-1],
    }
    ok = await connect(client, since=ids[6])
    replayed, _ = await collect_until(ok, ids[-1])
    assert replayed == ids[7:]
    await ws.close()
    await ok.close()


async def test_slow_consumer_is_closed_with_a_resumable_code(client: AppClient) -> None:
    bus = client.app[SERVICES].bus
    bus.queue_size = 5
    ws = await connect(client, since=0)
    assert (await next_json(ws))["control"] == "live"
    # Fan out faster than the socket can be read: the subscription's queue overflows.
    for n in range(200):
        bus.publish_transient("s", Token(seq=n, text="x" * 10_000))
    while True:
        message = await asyncio.wait_for(ws.receive(), 5)
        if message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED):
            break
    assert ws.close_code == CLOSE_SLOW_CONSUMER
    assert bus.subscriber_count == 0


async def test_page_carries_the_current_event_id_and_epoch(client: AppClient) -> None:
    ids = await publish_many(client, 2)
    response = await client.get("/", headers={"Authorization": f"Bearer {API_TOKEN}"})
    page = await response.text()
    assert f'data-last-id="{ids[-1]}"' in page
    assert f'data-epoch="{client.app[SERVICES].bus.epoch}"' in page
