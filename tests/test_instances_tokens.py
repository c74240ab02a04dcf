"""Two app instances on one PostgreSQL database: an agent's live `token` frames, streamed by a
real TokenCoalescer on one instance, reach real WebSocket clients on the other in seq order,
none twice, and the producing instance's clients get each once (not relayed back); a client
resuming on the other instance meets the relayed frames after its catch-up with no gap and no
duplicate; a lost LISTEN connection is made again and the frames it missed still come
(docs/database.md, Tokens across instances)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import aiohttp
import psycopg
import pytest

from bot.agents.token_relay import TokenRelay
from bot.agents.tokens import TokenCoalescer, TokenSequence
from tests.conftest import AppClient
from tests.sessions_helpers import connect, next_json
from tests.test_websocket import connect as connect_query
from web.keys import SERVICES, TOKEN_RELAY

pytestmark = pytest.mark.parametrize("database_engine", ["postgresql"], indirect=True)

STREAM = "pipeline:7"


@pytest.fixture
async def listening(two_instances: tuple[AppClient, AppClient]) -> tuple[AppClient, AppClient]:
    """The two instances once both relays listen."""
    for app in two_instances:
        await asyncio.wait_for(relay_of(app).listening.wait(), 10)
    return two_instances


def relay_of(app: AppClient) -> TokenRelay:
    return app.app[TOKEN_RELAY]


def coalescer(app: AppClient) -> TokenCoalescer:
    services = app.app[SERVICES]
    return TokenCoalescer(TokenSequence(services.db), services.bus, services.clock, STREAM)


async def stream(tokens: TokenCoalescer, pieces: list[str]) -> None:
    for piece in pieces:
        await tokens.add(piece)
        await tokens.flush()


async def tokens_through(
    ws: aiohttp.ClientWebSocketResponse, last_seq: int, after: int = 0
) -> list[dict[str, Any]]:
    """The token frames' data up to `last_seq`, asserting each is the next seq (no gap, none
    twice, in order)."""
    received: list[dict[str, Any]] = []
    while after < last_seq:
        frame = await asyncio.wait_for(next_json(ws), 10)
        assert frame["type"] == "token", frame
        assert frame["data"]["seq"] == after + 1, (frame, after)
        received.append(frame["data"])
        after = frame["data"]["seq"]
    return received


async def nothing_more(ws: aiohttp.ClientWebSocketResponse) -> None:
    await ws.send_json({"action": "ping"})
    assert (await asyncio.wait_for(next_json(ws), 10))["control"] == "pong"


async def test_tokens_streamed_on_one_instance_reach_the_others_clients_once_in_order(
    listening: tuple[AppClient, AppClient],
) -> None:
    producer, other = listening
    here, _ = await connect(producer, None, [STREAM])
    there, _ = await connect(other, None, [STREAM])
    pieces = [f"word{n} " for n in range(40)]
    tokens = coalescer(producer)
    await stream(tokens, pieces)
    await tokens.end_block()
    for ws in (here, there):
        received = await tokens_through(ws, len(pieces))
        assert "".join(data["text"] for data in received) == "".join(pieces)
        assert {data["block"] for data in received} == {1}
        await nothing_more(ws)
        await ws.close()
    assert relay_of(other).relayed == len(pieces)
    assert relay_of(producer).relayed == 0  # its own frames are never relayed back
    for app in listening:  # the block's `ended` notice: neither keeps the stream
        seqs = app.app[SERVICES].bus.token_seqs
        await until(lambda seqs=seqs: seqs.last(STREAM) is None)


async def until(condition: Callable[[], bool]) -> None:
    """Wait for a state no event announces (a notice handled, a connection's end)."""
    for _ in range(1000):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise TimeoutError("the condition never held")


async def test_a_client_resuming_on_the_other_instance_meets_relayed_frames_without_a_seam(
    listening: tuple[AppClient, AppClient],
) -> None:
    producer, other = listening
    bus = other.app[SERVICES].bus
    pieces = [f"{n} " for n in range(120)]
    resume_at = {count: asyncio.Event() for count in (1, 30, 90)}

    async def produce() -> None:
        tokens = coalescer(producer)
        for count, piece in enumerate(pieces, start=1):
            await stream(tokens, [piece])
            if count in resume_at:
                resume_at[count].set()

    producing = asyncio.create_task(produce())
    sockets = []
    for reached in resume_at.values():
        await asyncio.wait_for(reached.wait(), 10)
        ws = await connect_query(
            other, streams=STREAM, since=await bus.newest_id(), epoch=bus.epoch
        )
        sockets.append(ws)
    await producing
    for ws in sockets:
        catchup = await asyncio.wait_for(next_json(ws), 10)
        assert catchup["type"] == "token_catchup", catchup
        data = catchup["data"]
        text = data["snapshot"]["text"] + "".join(frame["text"] for frame in data["tail"])
        assert (await asyncio.wait_for(next_json(ws), 10))["control"] == "live"
        live = await tokens_through(ws, len(pieces), after=data["last_seq"])
        assert text + "".join(frame["text"] for frame in live) == "".join(pieces)
        await nothing_more(ws)
        await ws.close()


async def test_a_lost_listening_connection_is_made_again_and_missed_frames_still_come(
    listening: tuple[AppClient, AppClient], database_url: str
) -> None:
    producer, other = listening
    relay = relay_of(other)
    there, _ = await connect(other, None, [STREAM])
    tokens = coalescer(producer)
    await stream(tokens, ["a", "b"])
    await tokens_through(there, 2)
    with psycopg.connect(database_url, autocommit=True) as admin:
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE application_name = 'biagent-listen-biagent_tokens'"
            " AND datname = current_database()"
        )
    await until(lambda: not relay.listening.is_set())  # the relay sees its connection go
    await stream(tokens, ["c", "d"])  # their notices reach no one on `other`
    await asyncio.wait_for(relay.listening.wait(), 10)  # connected again after the pause
    missed = await tokens_through(there, 4, after=2)  # read as it connected, no notice needed
    assert [data["text"] for data in missed] == ["c", "d"]
    await stream(tokens, ["e"])
    assert [data["text"] for data in await tokens_through(there, 5, after=4)] == ["e"]
    assert relay.connections == 2
    await nothing_more(there)
    await there.close()
