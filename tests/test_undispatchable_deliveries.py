"""Deliveries that can never be dispatched are refused at intake with the reason. Through the
real server, with bodies built from the real payloads in tests/fixtures/github."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import ClientResponse

from tests.conftest import AppClient
from tests.helpers import auth_headers, github_headers, load_json


async def post(client: AppClient, event: str, body: bytes) -> ClientResponse:
    return await client.post("/webhooks/github", data=body, headers=github_headers(event, body))


async def stored(client: AppClient) -> list[dict[str, Any]]:
    listed = await client.get("/api/deliveries", headers=auth_headers())
    found: list[dict[str, Any]] = (await listed.json())["deliveries"]
    return found


async def refusal(response: ClientResponse) -> dict[str, str]:
    assert response.status == 400, await response.text()
    error: dict[str, str] = (await response.json())["error"]
    return error


async def test_an_object_action_is_a_400_naming_the_field(client: AppClient) -> None:
    payload = load_json("github/pull_request/opened.payload.json")
    payload["action"] = {"name": "opened"}
    error = await refusal(await post(client, "pull_request", json.dumps(payload).encode()))
    assert error["code"] == "invalid_field"
    assert error["message"].startswith("action: Expected `str | null`, got `object`")
    assert await stored(client) == []


async def test_a_list_action_is_a_400(client: AppClient) -> None:
    payload = load_json("github/issue_comment/created.payload.json")
    payload["action"] = ["created"]
    error = await refusal(await post(client, "issue_comment", json.dumps(payload).encode()))
    assert (error["code"], error["message"].split(":")[0]) == ("invalid_field", "action")


async def test_installation_repositories_without_installation_is_a_400(
    client: AppClient,
) -> None:
    payload = load_json("github/installation_repositories/added.payload.json")
    del payload["installation"]
    body = json.dumps(payload).encode()
    error = await refusal(await post(client, "installation_repositories", body))
    assert error["code"] == "invalid_field"
    assert error["message"] == "installation: Object missing required field `installation`"


async def test_a_comment_without_an_id_is_a_400_naming_the_field(client: AppClient) -> None:
    payload = load_json("github/pull_request_review_comment/created.payload.json")
    del payload["comment"]["id"]
    error = await refusal(
        await post(client, "pull_request_review_comment", json.dumps(payload).encode())
    )
    assert error["message"] == "comment.id: Object missing required field `id`"
