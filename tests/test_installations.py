"""installation and installation_repositories webhooks record where the app may act."""

from __future__ import annotations

import json

import pytest

from storage import installations
from tests.conftest import AppClient
from tests.helpers import auth_headers, github_headers, load_json
from web.keys import DISPATCHER, SERVICES

pytestmark = pytest.mark.both_databases


async def deliver(client: AppClient, event: str, fixture: str, delivery_id: str) -> None:
    body = json.dumps(load_json(f"github/{fixture}")).encode()
    headers = github_headers(event, body, delivery_id=delivery_id)
    assert (await client.post("/webhooks/github", data=body, headers=headers)).status == 202
    await client.app[DISPATCHER].drain()


async def test_installation_created_records_account_and_repositories(client: AppClient) -> None:
    await deliver(client, "installation", "installation/created.payload.json", "i-1")
    found = await installations.list_all(client.app[SERVICES].db)
    payload = load_json("github/installation/created.payload.json")
    assert [(i.id, i.account_login) for i in found] == [
        (payload["installation"]["id"], payload["installation"]["account"]["login"])
    ]
    assert list(found[0].repositories) == sorted(r["full_name"] for r in payload["repositories"])
    page = await (await client.get("/", headers=auth_headers())).text()
    assert payload["installation"]["account"]["login"] in page


async def test_repositories_added_then_removed(client: AppClient) -> None:
    await deliver(client, "installation", "installation/created.payload.json", "i-1")
    added = load_json("github/installation_repositories/added.payload.json")
    await deliver(
        client, "installation_repositories", "installation_repositories/added.payload.json", "r-1"
    )
    names = (await installations.list_all(client.app[SERVICES].db))[0].repositories
    assert {r["full_name"] for r in added["repositories_added"]} <= set(names)
    await deliver(
        client,
        "installation_repositories",
        "installation_repositories/removed.payload.json",
        "r-2",
    )
    removed = load_json("github/installation_repositories/removed.payload.json")
    names = (await installations.list_all(client.app[SERVICES].db))[0].repositories
    assert not {r["full_name"] for r in removed["repositories_removed"]} & set(names)


async def test_suspend_and_delete_are_recorded_and_announced(client: AppClient) -> None:
    await deliver(client, "installation", "installation/created.payload.json", "i-1")
    await deliver(client, "installation", "installation/suspend.payload.json", "i-2")
    await deliver(client, "installation", "installation/deleted.payload.json", "i-3")
    db = client.app[SERVICES].db
    by_id = {found.id: found for found in await installations.list_all(db)}
    suspended = load_json("github/installation/suspend.payload.json")["installation"]["id"]
    deleted = load_json("github/installation/deleted.payload.json")["installation"]["id"]
    assert by_id[suspended].suspended and not by_id[suspended].deleted
    assert by_id[deleted].deleted and by_id[deleted].repositories == ()
    actions = [
        json.loads(row[0])["action"]
        for row in await db.fetchall(
            "SELECT data FROM events WHERE type = 'installation_updated' ORDER BY id"
        )
    ]
    assert actions == ["created", "suspend", "deleted"]


async def test_the_announcement_names_the_installations_own_repositories(
    client: AppClient,
) -> None:
    await deliver(client, "installation", "installation/created.payload.json", "i-1")
    other = load_json("github/installation/created.payload.json")
    other["installation"]["id"] += 1
    other["repositories"] = [
        {"id": 1, "name": "elsewhere", "full_name": "someone/elsewhere", "private": False}
    ]
    body = json.dumps(other).encode()
    headers = github_headers("installation", body, delivery_id="i-2")
    assert (await client.post("/webhooks/github", data=body, headers=headers)).status == 202
    await client.app[DISPATCHER].drain()
    rows = await client.app[SERVICES].db.fetchall(
        "SELECT data FROM events WHERE type = 'installation_updated' ORDER BY id"
    )
    first = load_json("github/installation/created.payload.json")["repositories"]
    assert [json.loads(row[0])["repositories"] for row in rows] == [
        sorted(r["full_name"] for r in first),
        ["someone/elsewhere"],
    ]
