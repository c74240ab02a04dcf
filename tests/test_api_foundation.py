"""The foundation's REST API: deliveries (filter, redeliver) and events since an id."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest

from bot.config import Settings
from bot.worktrees.events import WorktreeStatus
from bot.worktrees.states import ProgressKind
from tests.conftest import AppClient
from tests.helpers import auth_headers, github_headers, load_json
from web.app import AccessLogger, create_app
from web.keys import DISPATCHER, SERVICES


async def deliver_ping(client: AppClient, delivery_id: str) -> None:
    body = json.dumps(load_json("github/ping/payload.json")).encode()
    response = await client.post(
        "/webhooks/github", data=body, headers=github_headers("ping", body, delivery_id=delivery_id)
    )
    assert response.status == 202


async def test_deliveries_filter_by_status(client: AppClient) -> None:
    await deliver_ping(client, "a")
    await client.app[DISPATCHER].drain()
    await deliver_ping(client, "b")
    done = await (await client.get("/api/deliveries?status=done", headers=auth_headers())).json()
    assert [d["delivery_id"] for d in done["deliveries"]] == ["a"]
    bad = await client.get("/api/deliveries?status=weird", headers=auth_headers())
    assert bad.status == 400
    assert (await bad.json())["error"]["code"] == "bad_parameter"


async def test_redeliver_runs_a_delivery_again(client: AppClient) -> None:
    await deliver_ping(client, "a")
    await client.app[DISPATCHER].drain()
    listed = await (await client.get("/api/deliveries", headers=auth_headers())).json()
    delivery_pk = listed["deliveries"][0]["id"]
    response = await client.post(f"/api/deliveries/{delivery_pk}/redeliver", headers=auth_headers())
    assert response.status == 202
    assert (await response.json())["delivery"]["status"] == "pending"
    await client.app[DISPATCHER].drain()
    again = await (await client.get("/api/deliveries", headers=auth_headers())).json()
    assert (again["deliveries"][0]["status"], again["deliveries"][0]["attempts"]) == ("done", 1)
    missing = await client.post("/api/deliveries/999/redeliver", headers=auth_headers())
    assert missing.status == 404


def progress(n: int) -> WorktreeStatus:
    return WorktreeStatus(session_id=str(n), status=ProgressKind.SETUP_OUTPUT)


async def test_events_since_returns_later_events_in_order(client: AppClient) -> None:
    bus = client.app[SERVICES].bus
    ids = [await bus.publish("s", progress(n)) for n in range(4)]
    body = await (await client.get(f"/api/events?since={ids[1]}", headers=auth_headers())).json()
    assert [event["id"] for event in body["events"]] == ids[2:]
    assert body["epoch"] == bus.epoch
    assert body["events"][0] == {
        "id": ids[2],
        "type": "worktree_status",
        "stream": "s",
        "ts": body["events"][0]["ts"],
        "data": {"session_id": "2", "status": "setup_output", "detail": None, "repository": None},
    }


async def test_events_since_pruned_history_is_410(client: AppClient) -> None:
    bus = client.app[SERVICES].bus
    for n in range(6):
        await bus.publish("s", progress(n))
    await bus.prune(keep=2)
    response = await client.get("/api/events?since=1", headers=auth_headers())
    assert response.status == 410
    assert (await response.json())["error"]["code"] == "resync_required"


async def test_healthz_is_open(client: AppClient) -> None:
    response = await client.get("/healthz")
    assert response.status == 200
    assert await response.json() == {"status": "ok"}


async def test_access_log_keeps_accepted_webhooks_at_debug(
    aiohttp_server: Any, aiohttp_client: Any, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    server = await aiohttp_server(create_app(settings), access_log_class=AccessLogger)
    client = await aiohttp_client(server)
    with caplog.at_level(logging.INFO, logger="aiohttp.access"):
        await deliver_ping(client, "logged")
        refused = await client.post(
            "/webhooks/github", data=b"{}", headers={"X-GitHub-Event": "ping"}
        )
        assert refused.status == 401
        assert (await client.get("/healthz")).status == 200
    lines = [record.getMessage() for record in caplog.records if record.name == "aiohttp.access"]
    assert [line.rsplit(" ", 1)[0] for line in lines] == [
        "POST /webhooks/github 401",
        "GET /healthz 200",
    ]
    caplog.clear()
    with caplog.at_level(logging.DEBUG, logger="aiohttp.access"):
        await deliver_ping(client, "logged-too")
    assert [r.getMessage().rsplit(" ", 1)[0] for r in caplog.records] == [
        "POST /webhooks/github 202"
    ]
