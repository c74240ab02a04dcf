"""POST /webhooks/jira: signature, durable intake, dedupe, and the mirror updated at once."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from aiohttp import ClientResponse

from tests.conftest import AppClient, StartApp
from tests.fakes.jira import FakeJira
from tests.helpers import auth_headers, jira_headers, jira_settings, load_json
from web.keys import DISPATCHER, SERVICES


async def post(client: AppClient, payload: dict[str, Any], **kwargs: Any) -> ClientResponse:
    body = json.dumps(payload).encode()
    return await client.post("/webhooks/jira", data=body, headers=jira_headers(body, **kwargs))


async def ticket(client: AppClient, key: str) -> dict[str, Any] | None:
    response = await client.get(f"/api/tickets/{key}", headers=auth_headers())
    return await response.json() if response.status == 200 else None


async def test_a_bad_signature_is_401(
    start_app: StartApp, tmp_path: Path, fake_jira: FakeJira
) -> None:
    client = await start_app(jira_settings(tmp_path, fake_jira))
    body = json.dumps(load_json("jira/webhooks-cloud/jira-issue_created.json")).encode()
    headers = jira_headers(body, secret="not-the-secret")
    response = await client.post("/webhooks/jira", data=body, headers=headers)
    assert response.status == 401
    assert (await response.json())["error"]["code"] == "bad_signature"
    del headers["X-Hub-Signature"]
    assert (await client.post("/webhooks/jira", data=body, headers=headers)).status == 401
    assert await client.app[SERVICES].db.fetchval("SELECT COUNT(*) FROM deliveries") == 0


async def test_no_secret_configured_is_503(
    start_app: StartApp, tmp_path: Path, fake_jira: FakeJira
) -> None:
    client = await start_app(jira_settings(tmp_path, fake_jira, jira_webhook_secret=None))
    body = b'{"webhookEvent": "jira:issue_updated"}'
    response = await client.post("/webhooks/jira", data=body, headers=jira_headers(body))
    assert response.status == 503


async def test_a_signed_body_with_bad_utf8_in_a_skipped_field_is_400(
    start_app: StartApp, tmp_path: Path, fake_jira: FakeJira
) -> None:
    client = await start_app(jira_settings(tmp_path, fake_jira))
    body = b'{"webhookEvent": "jira:issue_updated", "other": "\xff"}'
    response = await client.post("/webhooks/jira", data=body, headers=jira_headers(body))
    assert response.status == 400
    assert (await response.json())["error"]["code"] == "malformed_body"


async def test_issue_created_is_mirrored_at_once_and_a_redelivery_is_a_no_op(
    start_app: StartApp, tmp_path: Path, fake_jira: FakeJira
) -> None:
    payload = load_json("jira/webhooks-cloud/jira-issue_created.json")
    fake_jira.add_issue_payload(payload["issue"])
    client = await start_app(jira_settings(tmp_path, fake_jira))
    first = await post(client, payload, identifier="wh-1")
    second = await post(client, payload, identifier="wh-1")
    assert (first.status, (await first.json())["status"]) == (202, "accepted")
    assert (await second.json())["status"] == "duplicate"
    await client.app[DISPATCHER].drain()
    stored = await ticket(client, "KAN-3")
    assert stored is not None and stored["summary"] == payload["issue"]["fields"]["summary"]
    db = client.app[SERVICES].db
    row = await db.fetchone("SELECT source, event, action, status FROM deliveries")
    assert tuple(row) == ("jira", "jira:issue_created", "issue_created", "done")
    events = await db.fetchall("SELECT data FROM events WHERE type = 'ticket_updated'")
    assert [json.loads(e[0])["key"] for e in events] == ["KAN-3"]


async def test_issue_updated_fetches_the_current_state(
    start_app: StartApp, tmp_path: Path, fake_jira: FakeJira
) -> None:
    payload = load_json("jira/webhooks/issue/updated/status-changed.json")
    key = fake_jira.add_issue_payload(payload["issue"])
    client = await start_app(jira_settings(tmp_path, fake_jira))
    await post(client, payload)
    await client.app[DISPATCHER].drain()
    fake_jira.update_issue(key, status="Done")
    await post(client, payload)  # a late copy of the old event: the mirror shows Jira's now
    await client.app[DISPATCHER].drain()
    stored = await ticket(client, key)
    assert stored is not None and stored["status"] == "Done"


async def test_issue_deleted_removes_the_ticket(
    start_app: StartApp, tmp_path: Path, fake_jira: FakeJira
) -> None:
    payload = load_json("jira/webhooks-cloud/jira-issue_created.json")
    fake_jira.add_issue_payload(payload["issue"])
    client = await start_app(jira_settings(tmp_path, fake_jira))
    await post(client, payload)
    await client.app[DISPATCHER].drain()
    assert await ticket(client, "KAN-3") is not None
    fake_jira.delete_issue("KAN-3")
    await post(client, {**payload, "webhookEvent": "jira:issue_deleted"})
    await client.app[DISPATCHER].drain()
    assert await ticket(client, "KAN-3") is None


async def test_a_comment_event_brings_in_the_comment(
    start_app: StartApp, tmp_path: Path, fake_jira: FakeJira
) -> None:
    payload = load_json("jira/webhooks-cloud/comment_created.json")
    key = fake_jira.add_issue_payload(payload["issue"])
    fake_jira.issue(key).comments.append(
        {"id": "10000", "author": "Leo", "body": "Looks good", "created_ms": fake_jira.tick()}
    )
    client = await start_app(jira_settings(tmp_path, fake_jira))
    await post(client, payload)
    await client.app[DISPATCHER].drain()
    stored = await ticket(client, key)
    assert stored is not None
    assert [(c["author"], c["body"]) for c in stored["comments"]] == [("Leo", "Looks good")]


async def test_a_server_comment_event_finds_its_issue_in_the_comment_url(
    start_app: StartApp, tmp_path: Path, fake_jira: FakeJira
) -> None:
    payload = load_json("jira/webhooks/comment/created.json")
    raw = load_json("jira/webhooks/issue/created.json")["issue"]
    fake_jira.add_issue_payload({**raw, "id": "26313"})
    client = await start_app(jira_settings(tmp_path, fake_jira))
    await post(client, payload)
    await client.app[DISPATCHER].drain()
    assert await ticket(client, raw["key"]) is not None


async def test_an_event_outside_the_configured_scope_is_not_mirrored(
    start_app: StartApp, tmp_path: Path, fake_jira: FakeJira
) -> None:
    payload = load_json("jira/webhooks-cloud/jira-issue_created.json")
    fake_jira.add_issue_payload(payload["issue"])
    client = await start_app(jira_settings(tmp_path, fake_jira, jira_jql="project = PROJ"))
    await post(client, payload)
    await client.app[DISPATCHER].drain()
    (search,) = fake_jira.requests_to("/search")  # the webhook was worked: Jira was asked
    assert search.query["jql"] == [f"id = {payload['issue']['id']} AND (project = PROJ)"]
    assert await ticket(client, "KAN-3") is None


async def test_an_update_of_an_issue_deleted_since_forgets_it_on_cloud(
    start_app: StartApp, tmp_path: Path
) -> None:
    fake = FakeJira(deployment="Cloud")
    await fake.start()
    try:
        payload = load_json("jira/webhooks-cloud/jira-issue_created.json")
        fake.add_issue_payload(payload["issue"])
        client = await start_app(jira_settings(tmp_path, fake))
        await post(client, payload)
        await client.app[DISPATCHER].drain()
        assert await ticket(client, "KAN-3") is not None
        fake.delete_issue("KAN-3")
        # Cloud answers this search 400; only the issue's 404 proves it is gone.
        await post(client, {**payload, "webhookEvent": "jira:issue_updated"})
        await client.app[DISPATCHER].drain()
        assert await ticket(client, "KAN-3") is None
        assert fake.requests_to(f"/issue/{payload['issue']['id']}")
    finally:
        await fake.close()
