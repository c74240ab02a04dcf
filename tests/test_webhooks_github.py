"""POST /webhooks/github: signatures, malformed input, durable intake, dedupe, dispatch."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientResponse

from bot.config import Secret
from tests.conftest import AppClient, StartApp
from tests.helpers import FIXTURES, auth_headers, github_headers, load_json, make_settings
from web.keys import DISPATCHER, SERVICES

GITHUB_FIXTURES = sorted(
    path
    for path in (FIXTURES / "github").rglob("*.json")
    if path.parent.name not in ("deliveries",)
)


async def post(client: AppClient, event: str, body: bytes, **kwargs: Any) -> ClientResponse:
    return await client.post(
        "/webhooks/github", data=body, headers=github_headers(event, body, **kwargs)
    )


async def test_ping_is_accepted_and_dispatched(client: AppClient) -> None:
    body = json.dumps(load_json("github/ping/payload.json")).encode()
    response = await post(client, "ping", body, delivery_id="d-1")
    assert response.status == 202
    assert (await response.json())["status"] == "accepted"
    await client.app[DISPATCHER].drain()
    listed = await client.get("/api/deliveries", headers=auth_headers())
    deliveries = (await listed.json())["deliveries"]
    assert [(d["delivery_id"], d["status"]) for d in deliveries] == [("d-1", "done")]


async def test_missing_signature_is_401(client: AppClient) -> None:
    body = b'{"zen": "x"}'
    headers = github_headers("ping", body)
    del headers["X-Hub-Signature-256"]
    response = await client.post("/webhooks/github", data=body, headers=headers)
    assert response.status == 401


async def test_wrong_signature_is_401(client: AppClient) -> None:
    body = b'{"zen": "x"}'
    headers = github_headers("ping", body, secret="another-secret")
    response = await client.post("/webhooks/github", data=body, headers=headers)
    assert response.status == 401
    assert (await response.json())["error"]["code"] == "bad_signature"


async def test_one_changed_byte_fails_the_signature(client: AppClient) -> None:
    body = b'{"zen": "x"}'
    headers = github_headers("ping", body)
    response = await client.post("/webhooks/github", data=b'{"zen": "y"}', headers=headers)
    assert response.status == 401


async def test_no_secret_configured_is_503(start_app: StartApp, tmp_path: Path) -> None:
    client = await start_app(make_settings(tmp_path, github_webhook_secret=None))
    body = b"{}"
    response = await client.post(
        "/webhooks/github", data=body, headers=github_headers("ping", body)
    )
    assert response.status == 503


@pytest.mark.parametrize(
    ("body", "header", "value"),
    [
        (b"not json", None, None),
        (b"[1, 2]", None, None),
        (b"\xff\xfe", None, None),
        (b'{"action": "x", "other": "\xff"}', None, None),  # bad UTF-8 in a skipped field
        (b"{}", "X-GitHub-Event", ""),
        (b"{}", "X-GitHub-Delivery", ""),
        (b"{}", "X-GitHub-Event", "Bad Event!"),
    ],
)
async def test_malformed_requests_are_400(
    client: AppClient, body: bytes, header: str | None, value: str | None
) -> None:
    headers = github_headers("ping", body)
    if header is not None:
        headers[header] = value
    response = await client.post("/webhooks/github", data=body, headers=headers)
    assert response.status == 400
    assert "error" in await response.json()


async def test_redelivery_is_a_no_op(client: AppClient) -> None:
    body = json.dumps(load_json("github/installation/created.payload.json")).encode()
    first = await post(client, "installation", body, delivery_id="same-id")
    second = await post(client, "installation", body, delivery_id="same-id")
    assert (await first.json())["status"] == "accepted"
    assert (await second.json())["status"] == "duplicate"
    await client.app[DISPATCHER].drain()
    db = client.app[SERVICES].db
    assert await db.fetchval("SELECT COUNT(*) FROM deliveries") == 1
    assert await db.fetchval("SELECT attempts FROM deliveries") == 1


@pytest.mark.parametrize("path", GITHUB_FIXTURES, ids=lambda p: str(p.relative_to(FIXTURES)))
async def test_every_fixture_payload_is_accepted_and_dispatched(
    client: AppClient, path: Path
) -> None:
    body = path.read_bytes()
    response = await post(client, path.parent.name, body, delivery_id="fixture-1")
    assert response.status == 202
    await client.app[DISPATCHER].drain()
    db = client.app[SERVICES].db
    status, error = (await db.fetchall("SELECT status, last_error FROM deliveries"))[0]
    assert (status, error) == ("done", None)


@pytest.mark.parametrize(
    "name", ["check_suite.rerequested", "pull_request.closed.merged", "pull_request.opened"]
)
async def test_recorded_deliveries_verify_with_their_published_secret(
    start_app: StartApp, tmp_path: Path, name: str
) -> None:
    recorded = load_json(f"github/deliveries/{name}.json")
    secret = "402786017574bd28f9d8f7a18648939751c47fe09077d56e10f0444f14fbb73b"
    client = await start_app(make_settings(tmp_path, github_webhook_secret=Secret(secret)))
    body = base64.b64decode(recorded["body_raw_base64"])
    headers = {
        "X-GitHub-Event": recorded["headers"]["x-github-event"],
        "X-GitHub-Delivery": recorded["headers"]["x-github-delivery"],
        "X-Hub-Signature-256": recorded["headers"]["x-hub-signature-256"],
        "Content-Type": "application/json",
    }
    response = await client.post("/webhooks/github", data=body, headers=headers)
    assert response.status == 202
    tampered = body.replace(b'"', b" ", 1)
    response = await client.post(
        "/webhooks/github", data=tampered, headers={**headers, "X-GitHub-Delivery": "other"}
    )
    assert response.status == 401
