"""Odd and hostile input gets a clear 4xx, never a 500: raw bytes in headers, broken bodies,
numbers out of range, wrong JSON types on the WebSocket."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from bot.config import Secret
from tests.conftest import AppClient, StartApp
from tests.helpers import (
    API_TOKEN,
    JIRA_WEBHOOK_SECRET,
    auth_headers,
    github_headers,
    jira_headers,
    make_settings,
)
from web.keys import DISPATCHER, SERVICES


async def raw_request(client: AppClient, head: bytes, body: bytes = b"") -> int:
    """Send bytes as they are (aiohttp's client would refuse some of these headers)."""
    assert client.server.port is not None
    reader, writer = await asyncio.open_connection("127.0.0.1", client.server.port)
    writer.write(head + b"\r\n" + body)
    await writer.drain()
    status_line = await reader.readline()
    writer.close()
    await writer.wait_closed()
    return int(status_line.split()[1])


async def test_a_token_with_raw_non_utf8_bytes_is_refused(client: AppClient) -> None:
    for header in (b"Authorization: Bearer \xff\xfe", b"Cookie: biagent_token=\xff"):
        head = b"GET /api/events HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" + header + b"\r\n"
        assert await raw_request(client, head) == 401


async def test_a_non_ascii_signature_is_refused(client: AppClient) -> None:
    body = b'{"zen": "hi"}'
    head = (
        b"POST /webhooks/github HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
        b"X-GitHub-Event: ping\r\nX-GitHub-Delivery: d-1\r\n"
        b"Content-Type: application/json\r\nX-Hub-Signature-256: sha256=\xc3\xa9\r\n"
        + f"Content-Length: {len(body)}\r\n".encode()
    )
    assert await raw_request(client, head, body) == 401


async def test_a_body_that_does_not_decompress_is_a_400(client: AppClient) -> None:
    body = b"this is not gzip"
    headers = {**github_headers("ping", body, delivery_id="gz"), "Content-Encoding": "gzip"}
    response = await client.post("/webhooks/github", data=body, headers=headers)
    assert response.status == 400
    assert (await response.json())["error"]["code"] == "malformed_body"


async def test_an_installation_id_out_of_range_is_not_kept(client: AppClient) -> None:
    for n, odd in enumerate((2**63, True, 1.5, -4)):
        body = json.dumps({"zen": "hi", "installation": {"id": odd}}).encode()
        headers = github_headers("ping", body, delivery_id=f"odd-{n}")
        assert (await client.post("/webhooks/github", data=body, headers=headers)).status == 202
    listed = await (await client.get("/api/deliveries", headers=auth_headers())).json()
    assert [d["installation_id"] for d in listed["deliveries"]] == [None] * 4


async def test_a_deeply_nested_jira_body_is_a_400(start_app: StartApp, tmp_path: Path) -> None:
    client = await start_app(
        make_settings(tmp_path, jira_webhook_secret=Secret(JIRA_WEBHOOK_SECRET))
    )
    body = b"[" * 100_000
    response = await client.post("/webhooks/jira", data=body, headers=jira_headers(body))
    assert response.status == 400


async def test_ids_in_paths_beyond_the_database_range_are_a_400(client: AppClient) -> None:
    for path in ("/api/deliveries/99999999999999999999999/redeliver",):
        response = await client.post(path, headers=auth_headers())
        assert response.status == 400
    response = await client.get("/api/pull-requests/99999999999999999999", headers=auth_headers())
    assert response.status == 400


async def test_websocket_since_of_the_wrong_type_gets_an_error_frame(client: AppClient) -> None:
    async with client.ws_connect(f"/ws?token={API_TOKEN}") as ws:
        hello = await ws.receive_json()
        assert hello["control"] == "hello"
        for since in ("[1]", '{"a": 1}', "1e400", "true", '"1.5"', "-1", str(2**63)):
            await ws.send_str('{"action": "subscribe", "streams": "*", "since": ' + since + "}")
            answer = await ws.receive_json(timeout=5)
            assert answer["control"] == "error", since
        await ws.send_str(json.dumps({"action": "subscribe", "since": 0, "epoch": 7}))
        assert (await ws.receive_json(timeout=5))["control"] == "error"
        # The connection survived all of that: a good subscribe still goes live.
        await ws.send_str(json.dumps({"action": "subscribe", "streams": "*", "since": "0"}))
        assert (await ws.receive_json(timeout=5))["control"] == "live"


async def test_events_after_pruning_say_where_to_resume(client: AppClient) -> None:
    body = b'{"zen": "hi"}'
    for n in range(3):
        headers = github_headers("ping", body, delivery_id=f"e-{n}")
        await client.post("/webhooks/github", data=body, headers=headers)
    await client.app[DISPATCHER].drain()
    services = client.app[SERVICES]
    await services.bus.prune(1)
    gone = await client.get("/api/events?since=0", headers=auth_headers())
    assert gone.status == 410
    answer = await gone.json()
    assert answer["error"]["code"] == "resync_required"
    assert answer["epoch"] == services.bus.epoch and answer["last_id"] == services.bus.last_id
    assert answer["floor"] == services.bus.last_id - 1
    # Without `since` nothing is resumed: what is kept is served.
    kept = await (await client.get("/api/events", headers=auth_headers())).json()
    assert [event["id"] for event in kept["events"]] == [services.bus.last_id]
