"""Hostile input on GET /ws gets a WebSocket close code or an error frame, never an HTTP 500 in
the upgraded stream (README: "a 4xx, never a 500"; issue 12): lone UTF-16 surrogates, frames
nested 1,500 deep, 5,000-digit ids, a broken Origin, a fault after the upgrade. After each, a new
client still subscribes."""

from __future__ import annotations

import json
import sqlite3
from typing import Any

import aiohttp
import pytest
from aiohttp import WSCloseCode, WSMsgType

from storage import events as event_store
from tests.conftest import AppClient
from tests.helpers import API_TOKEN

LONE_SURROGATE = "\\ud800"  # as JSON writes it
FIVE_THOUSAND_DIGITS = "9" * 5000


async def connect(client: AppClient, **query: str) -> aiohttp.ClientWebSocketResponse:
    ws = await client.ws_connect("/ws", params={"token": API_TOKEN, **query})
    hello = await ws.receive_json(timeout=5)
    assert hello["control"] == "hello"
    return ws


async def closed_with(ws: aiohttp.ClientWebSocketResponse) -> tuple[int, str]:
    """The close frame the server sent: its code and reason."""
    message = await ws.receive(timeout=5)
    assert message.type == WSMsgType.CLOSE, message
    return message.data, message.extra


async def close_for(client: AppClient, frame: str) -> tuple[int, str]:
    """The close code and reason a new connection gets for sending `frame`."""
    ws = await connect(client)
    await ws.send_str(frame)
    return await closed_with(ws)


async def still_subscribes(client: AppClient) -> None:
    ws = await connect(client)
    await ws.send_json({"action": "subscribe", "streams": "*", "since": 0})
    assert (await ws.receive_json(timeout=5))["control"] == "live"
    await ws.close()


@pytest.mark.parametrize(
    "frame",
    [
        '{"action": "subscribe", "streams": ["pr:a@"], "since": 0}'.replace("@", LONE_SURROGATE),
        '{"action": "subscribe", "streams": "*", "epoch": "@"}'.replace("@", LONE_SURROGATE),
        '{"action": "subscribe", "since": "1@"}'.replace("@", LONE_SURROGATE),
        '{"action": "subscribe", "streams": ["\\udc00\\ud800"]}',
    ],
)
async def test_a_lone_surrogate_in_a_subscribe_frame_closes_with_1007(
    client: AppClient, frame: str
) -> None:
    code, reason = await close_for(client, frame)
    assert code == WSCloseCode.INVALID_TEXT
    assert reason.startswith("the frame holds a lone UTF-16 surrogate")
    await still_subscribes(client)


@pytest.mark.parametrize(
    "frame",
    [
        "[" * 1500 + "]" * 1500,
        '{"action": "subscribe", "streams": ' + "[" * 2000 + "]" * 2000 + "}",
        '{"action": "ping", "x": ' + '{"a": ' * 33 + "1" + "}" * 33 + "}",
    ],
    ids=["1500 deep", "2000 deep in streams", "33 deep in an unknown field"],
)
async def test_a_frame_nested_too_deep_closes_with_1008(client: AppClient, frame: str) -> None:
    assert await close_for(client, frame) == (
        WSCloseCode.POLICY_VIOLATION,
        "the frame nests deeper than 32 arrays or objects",
    )
    await still_subscribes(client)


@pytest.mark.parametrize("frame", ["hello", '{"action": "subscribe"', '{"since": Infinity}'])
async def test_a_frame_that_is_not_json_closes_with_1007(client: AppClient, frame: str) -> None:
    code, reason = await close_for(client, frame)
    assert code == WSCloseCode.INVALID_TEXT
    assert reason.startswith("the frame is not valid JSON")
    await still_subscribes(client)


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        ("[1]", "frames must be JSON objects"),
        ('{"action": 5}', "action: Expected `str`"),
        ('{"action": "subscribe", "streams": [1]}', "streams[0]: Expected `str`"),
        ('{"action": "subscribe", "since": ' + FIVE_THOUSAND_DIGITS + "}", "since: "),
        ('{"action": "subscribe", "since": "' + FIVE_THOUSAND_DIGITS + '"}', "since must be"),
        ('{"action": "subscribe", "since": ' + str(2**63) + "}", "since: Expected `int` <= "),
        ('{"action": "subscribe", "since": "\\uff11"}', "since must be a whole number"),
        ('{"action": "teleport"}', "unknown action"),
    ],
)
async def test_a_frame_of_the_wrong_shape_gets_an_error_frame_and_the_socket_stays(
    client: AppClient, frame: str, message: str
) -> None:
    ws = await connect(client)
    await ws.send_str(frame)
    answer = await ws.receive_json(timeout=5)
    assert answer["control"] == "error"
    assert answer["message"].startswith(message), answer
    await ws.send_json({"action": "ping"})
    assert (await ws.receive_json(timeout=5))["control"] == "pong"


async def test_a_5000_digit_since_in_the_query_gets_an_error_frame(client: AppClient) -> None:
    ws = await connect(client, streams="*", since=FIVE_THOUSAND_DIGITS)
    answer = await ws.receive_json(timeout=5)
    assert answer == {"control": "error", "message": "since must be a whole number (an event id)"}
    await still_subscribes(client)


@pytest.mark.parametrize("origin", ["http://[::1", "http://[", "https://[v1.x]"])
async def test_a_cookie_websocket_with_an_origin_that_is_no_url_is_403(
    client: AppClient, origin: str
) -> None:
    await client.get("/login", params={"token": API_TOKEN}, allow_redirects=False)
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await client.ws_connect("/ws", headers={"Origin": origin})
    assert refused.value.status == 403
    own = f"http://{client.server.host}:{client.server.port}"
    ws = await client.ws_connect("/ws", headers={"Origin": own})
    assert (await ws.receive_json(timeout=5))["control"] == "hello"
    await ws.close()


def failing(*args: Any, **kwargs: Any) -> Any:
    raise sqlite3.OperationalError("disk I/O error")


async def test_a_fault_during_a_subscribe_closes_with_1011_not_an_http_500(
    client: AppClient, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    ws = await connect(client)
    monkeypatch.setattr(event_store, "history_floor", failing)
    await ws.send_json({"action": "subscribe", "streams": "*", "since": 0})
    assert await closed_with(ws) == (WSCloseCode.INTERNAL_ERROR, "internal error")
    assert "WebSocket handler failed" in caplog.text
    monkeypatch.undo()
    await still_subscribes(client)


async def test_a_fault_while_replaying_closes_with_1011(
    client: AppClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    ws = await connect(client)
    monkeypatch.setattr(event_store, "envelopes_since", failing)
    await ws.send_str(json.dumps({"action": "subscribe", "streams": "*", "since": 0}))
    assert await closed_with(ws) == (WSCloseCode.INTERNAL_ERROR, "internal error")
    monkeypatch.undo()
    await still_subscribes(client)
