"""GET /api/deliveries pages through the whole log with a cursor (`before`, `next`), through the
real server: every delivery reached exactly once, however many there are."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from bot.clock import SystemClock
from storage import deliveries
from tests.conftest import AppClient
from tests.helpers import auth_headers, github_headers
from web.keys import SERVICES

pytestmark = pytest.mark.both_databases


async def store_deliveries(client: AppClient, count: int, *, source: str = "github") -> None:
    """`count` deliveries straight into the log (the webhook intake's own store)."""
    db, now = client.app[SERVICES].db, SystemClock().now()
    fields = {"event": "ping", "action": None, "installation_id": None, "payload": "{}"}
    await asyncio.gather(
        *(
            deliveries.accept(db, source=source, delivery_id=f"{source}-{n}", now=now, **fields)
            for n in range(count)
        )
    )


async def page(client: AppClient, **query: Any) -> dict[str, Any]:
    response = await client.get("/api/deliveries", params=query, headers=auth_headers())
    assert response.status == 200
    body: dict[str, Any] = await response.json()
    return body


async def walk(client: AppClient, before: int | None = None, **query: Any) -> list[int]:
    """Every id the cursor reaches, following `next` from `before` (or the newest) on."""
    seen: list[int] = []
    while True:
        body = await page(client, **query, **({} if before is None else {"before": before}))
        seen += [delivery["id"] for delivery in body["deliveries"]]
        if body["next"] is None:
            return seen
        before = body["next"]


async def test_paging_with_the_cursor_reaches_every_delivery_exactly_once(
    client: AppClient,
) -> None:
    await store_deliveries(client, 2345)
    seen = await walk(client, limit=1000)
    assert len(seen) == 2345 == len(set(seen))
    assert seen == sorted(seen, reverse=True)
    everything = await client.app[SERVICES].db.fetchall("SELECT id FROM deliveries")
    assert set(seen) == {row[0] for row in everything}


async def test_the_first_page_keeps_its_fields_and_adds_next(client: AppClient) -> None:
    await store_deliveries(client, 3)
    first = await page(client, limit=2)
    assert set(first) == {"deliveries", "counts", "next"}
    assert first["next"] == first["deliveries"][-1]["id"]
    last = await page(client, limit=2, before=first["next"])
    assert len(last["deliveries"]) == 1 and last["next"] is None


async def test_a_delivery_arriving_while_paging_does_not_shift_the_pages(
    client: AppClient,
) -> None:
    await store_deliveries(client, 25)
    first = await page(client, limit=10)
    body = b'{"zen": "Keep it logically awesome.", "hook_id": 1}'
    sent = await client.post("/webhooks/github", data=body, headers=github_headers("ping", body))
    assert sent.status == 202
    rest = await walk(client, limit=10, before=first["next"])
    seen = [delivery["id"] for delivery in first["deliveries"]] + rest
    assert len(seen) == 25 == len(set(seen))


async def test_paging_keeps_the_source_filter(client: AppClient) -> None:
    await store_deliveries(client, 7, source="github")
    await store_deliveries(client, 5, source="jira")
    seen = await walk(client, limit=2, source="jira")
    assert len(seen) == 5 == len(set(seen))


async def test_a_cursor_that_is_not_an_id_is_400(client: AppClient) -> None:
    for before in ("0", "-1", "x", "9" * 5000, json.dumps([1])):
        response = await client.get(
            "/api/deliveries", params={"before": before}, headers=auth_headers()
        )
        assert response.status == 400, before
