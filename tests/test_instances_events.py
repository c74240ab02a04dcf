"""Two app instances on one PostgreSQL database, each serving real WebSocket clients: every
client sees every event, whichever instance published it, in id order, none twice; a client
resumes on the other instance; two windows' UI-state merges through both instances all land
(docs/database.md, Events across instances)."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest

from bot.worktrees.events import WorktreeStatus
from bot.worktrees.states import ProgressKind
from tests.conftest import AppClient
from tests.helpers import API_TOKEN
from tests.sessions_helpers import api, connect, new_session, next_json
from web.keys import SERVICES

pytestmark = pytest.mark.parametrize("database_engine", ["postgresql"], indirect=True)


async def publish(client: AppClient, n: int) -> int:
    event = WorktreeStatus(session_id=str(n), status=ProgressKind.SETUP_OUTPUT)
    event_id = await client.app[SERVICES].bus.publish(f"worktree:{n % 3}", event)
    assert event_id is not None
    return event_id


async def event_ids(ws: aiohttp.ClientWebSocketResponse, count: int) -> list[int]:
    ids: list[int] = []
    while len(ids) < count:
        frame = await next_json(ws)
        assert "control" not in frame, frame
        ids.append(frame["id"])
    return ids


async def test_clients_on_each_instance_see_every_event_in_id_order_none_twice(
    two_instances: tuple[AppClient, AppClient],
) -> None:
    sockets = [(await connect(client, None, "*"))[0] for client in two_instances]
    published = await asyncio.gather(*(publish(two_instances[n % 2], n) for n in range(60)))
    for ws in sockets:
        assert await event_ids(ws, 60) == sorted(published)
    for ws in sockets:  # nothing more: none twice
        await ws.send_json({"action": "ping"})
        assert (await next_json(ws))["control"] == "pong"
        await ws.close()


async def test_a_client_resumes_on_the_other_instance(
    two_instances: tuple[AppClient, AppClient],
) -> None:
    first, second = two_instances
    ws, _ = await connect(first, None, "*")
    seen = [await publish(first, n) for n in range(3)]
    assert await event_ids(ws, 3) == seen
    await ws.close()
    hello_epoch = first.app[SERVICES].bus.epoch
    assert second.app[SERVICES].bus.epoch == hello_epoch  # one epoch per database
    later = [await publish(first, 3), await publish(second, 4)]
    resumed = await second.ws_connect(
        "/ws",
        params={"token": API_TOKEN, "streams": "*", "since": seen[-1], "epoch": hello_epoch},
    )
    assert (await next_json(resumed))["control"] == "hello"
    assert await event_ids(resumed, 2) == later
    assert (await next_json(resumed))["control"] == "live"
    await resumed.close()


async def test_page_merges_through_both_instances_all_land(
    two_instances: tuple[AppClient, AppClient],
) -> None:
    session_id = await new_session(two_instances[0])
    address = f"/api/sessions/{session_id}/ui-state"

    def merge(n: int) -> Any:
        body: dict[str, Any] = {"pages": {f"/pipelines/{n}": {"open": n}}}
        return api(two_instances[n % 2], "PATCH", address, body)

    await asyncio.gather(*(merge(n) for n in range(20)))
    stored = (await api(two_instances[1], "GET", address))["ui_state"]["pages"]
    assert {path: part["open"] for path, part in stored.items()} == {
        f"/pipelines/{n}": n for n in range(20)
    }
