"""Helpers for the browser-session tests: sessions made through the API, their tabs, the
WebSocket that names its session, and the offline recorder settled."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp

from tests.conftest import AppClient
from tests.helpers import API_TOKEN, auth_headers
from tests.worktree_helpers import wait_until
from web.keys import SESSIONS


async def api(
    client: AppClient, method: str, path: str, body: Any = None, status: int = 200
) -> Any:
    response = await client.request(method, path, json=body, headers=auth_headers())
    answer = await response.json()
    assert response.status == status, answer
    return answer


async def new_session(client: AppClient) -> str:
    return str((await api(client, "POST", "/api/sessions", status=201))["session"]["id"])


async def open_tabs(client: AppClient, session_id: str, *tabs: dict[str, Any]) -> None:
    await api(client, "PUT", f"/api/sessions/{session_id}/tabs", {"tabs": list(tabs)})


async def recorded(client: AppClient) -> None:
    """Every event published so far has gone through the offline recorder."""
    await client.app[SESSIONS].recorder.catch_up()


async def next_json(ws: aiohttp.ClientWebSocketResponse) -> dict[str, Any]:
    message = await asyncio.wait_for(ws.receive(), 5)
    assert message.type == aiohttp.WSMsgType.TEXT, message
    answer: dict[str, Any] = json.loads(message.data)
    return answer


async def connect(
    client: AppClient, session_id: str | None, streams: list[str] | str = "*"
) -> tuple[aiohttp.ClientWebSocketResponse, list[dict[str, Any]]]:
    """A socket subscribed to `streams`, naming `session_id`; the frames before `live`."""
    ws = await client.ws_connect("/ws", params={"token": API_TOKEN})
    assert (await next_json(ws))["control"] == "hello"
    frame: dict[str, Any] = {"action": "subscribe", "streams": streams}
    if session_id is not None:
        frame["session"] = session_id
    await ws.send_json(frame)
    before_live = []
    while (received := await next_json(ws)).get("control") != "live":
        before_live.append(received)
    return ws, before_live


async def disconnect(
    client: AppClient, ws: aiohttp.ClientWebSocketResponse, session_id: str
) -> None:
    """Close the socket and wait until the server has seen it go."""
    await ws.close()
    presence = client.app[SESSIONS].presence
    await wait_until(lambda: not presence.is_connected(session_id), what="the socket to go")
