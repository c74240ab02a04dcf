"""Deliveries that can never be dispatched: refused at intake with the reason, or rejected by the
dispatcher at once (no retries), while a transient GitHub failure is still retried. Through the
real server, with bodies built from the real payloads in tests/fixtures/github."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientResponse
from gidgethub import routing, sansio
from gidgethub.abc import GitHubAPI

from bot.concerns import Concern, HandlerContext
from bot.config import Secret
from storage import deliveries
from tests.conftest import AppClient, StartApp
from tests.helpers import (
    JIRA_WEBHOOK_SECRET,
    auth_headers,
    github_headers,
    jira_headers,
    load_json,
    make_settings,
)
from tests.reviews_scenario import REPO, Scenario
from web.keys import DISPATCHER, SERVICES

BIG = "__a_number_goes_here__"


async def post(client: AppClient, event: str, body: bytes) -> ClientResponse:
    return await client.post("/webhooks/github", data=body, headers=github_headers(event, body))


def body_with(payload: dict[str, Any], literal: str) -> bytes:
    """The payload as JSON with `literal` written where it holds BIG (json.dumps cannot write
    an integer over 4,300 digits)."""
    return json.dumps(payload).replace(f'"{BIG}"', literal).encode()


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


TOO_LONG = (
    "the payload holds an integer literal of more than 4300 digits, which the dispatcher's"
    " decoder refuses"
)


@pytest.mark.parametrize(
    ("place", "message"),
    [
        ("top level", TOO_LONG),
        ("a skipped object", TOO_LONG),
        ("an array", TOO_LONG),
        ("a field a handler reads", "comment.line: Integer value out of range"),
    ],
)
async def test_a_5000_digit_integer_anywhere_in_the_payload_is_a_400(
    client: AppClient, place: str, message: str
) -> None:
    payload = load_json("github/pull_request_review_comment/created.payload.json")
    if place == "top level":
        payload["extra"] = BIG
    elif place == "a skipped object":
        payload["comment"]["_links"]["self"]["size"] = BIG
    elif place == "an array":
        payload["pull_request"]["labels"] = [1, 2, BIG]
    else:
        payload["comment"]["line"] = BIG
    response = await post(client, "pull_request_review_comment", body_with(payload, "9" * 5000))
    assert (await refusal(response))["message"] == message
    assert await stored(client) == []


async def test_a_4300_digit_integer_and_a_5000_digit_string_are_accepted_and_worked(
    client: AppClient,
) -> None:
    payload = load_json("github/pull_request_review_comment/created.payload.json")
    payload["extra"] = {"number": BIG, "text": "1" * 5000}
    response = await post(client, "pull_request_review_comment", body_with(payload, "9" * 4300))
    assert response.status == 202
    await client.app[DISPATCHER].drain()
    assert [(d["status"], d["attempts"]) for d in await stored(client)] == [("done", 1)]


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


async def test_a_5000_digit_integer_in_a_jira_body_is_a_400(
    start_app: StartApp, tmp_path: Path
) -> None:
    settings = make_settings(tmp_path, jira_webhook_secret=Secret(JIRA_WEBHOOK_SECRET))
    client = await start_app(settings)
    payload = load_json("jira/webhooks-cloud/jira-issue_created.json")
    payload["issue"]["id"] = BIG
    body = body_with(payload, "7" * 5000)
    response = await client.post("/webhooks/jira", data=body, headers=jira_headers(body))
    assert await refusal(response) == {"code": "malformed_body", "message": TOO_LONG}


def shape_error_concern() -> Concern:
    """A concern whose handler reads a field the ping payload does not have."""
    router = routing.Router()

    @router.register("ping")
    async def read_ticket(
        event: sansio.Event, gh: GitHubAPI | None, context: HandlerContext
    ) -> None:
        event.data["ticket"]["key"]

    return Concern("tickets", router)


async def test_a_ping_a_handler_cannot_read_is_rejected_after_one_attempt(
    client: AppClient,
) -> None:
    dispatcher = client.app[DISPATCHER]
    dispatcher.concerns.append(shape_error_concern())
    body = json.dumps(load_json("github/ping/payload.json")).encode()
    assert (await post(client, "ping", body)).status == 202
    await dispatcher.drain()
    await dispatcher.drain()  # nothing is due again: no retry was scheduled
    listed = await client.get("/api/deliveries?status=rejected", headers=auth_headers())
    answer = await listed.json()
    (rejected,) = answer["deliveries"]
    assert (rejected["status"], rejected["attempts"]) == ("rejected", 1)
    assert rejected["last_error"] == (
        "rejected, not retried: tickets: payload rejected: KeyError: 'ticket'"
    )
    assert answer["counts"] == {"rejected": 1}
    db = client.app[SERVICES].db
    results = await db.fetchall("SELECT concern, status FROM delivery_results ORDER BY concern")
    assert [tuple(row) for row in results] == [("installations", "done"), ("tickets", "rejected")]


async def test_a_stored_pull_request_with_an_object_action_is_rejected_before_any_handler(
    client: AppClient,
) -> None:
    """A delivery stored before the intake checked envelopes (or by an older version)."""
    payload = load_json("github/pull_request/closed.payload.json")
    payload["action"] = {"name": "closed"}
    services = client.app[SERVICES]
    await deliveries.accept(
        services.db,
        source="github",
        delivery_id="stored-before",
        event="pull_request",
        action=None,
        installation_id=None,
        payload=json.dumps(payload),
        now=services.clock.now(),
    )
    await client.app[DISPATCHER].drain()
    (rejected,) = await stored(client)
    assert (rejected["status"], rejected["attempts"]) == ("rejected", 1)
    assert rejected["last_error"] == (
        "rejected, not retried: the payload does not fit a pull_request: "
        "Expected `str | null`, got `object` - at `$.action`"
    )
    assert await services.db.fetchval("SELECT COUNT(*) FROM delivery_results") == 0


async def logged(scenario: Scenario, delivery_id: str) -> dict[str, Any]:
    listed = (await scenario.api("/api/deliveries"))["deliveries"]
    (found,) = [d for d in listed if d["delivery_id"] == delivery_id]
    return found


async def test_a_review_comment_whose_check_run_gets_a_github_502_is_retried(
    scenario: Scenario,
) -> None:
    scenario.fake.script_failure("POST", rf"/repos/{REPO}/check-runs", status=502, times=1)
    delivery_id = await scenario.send("pull_request_review_comment", scenario.review_comment("x"))
    failed = await logged(scenario, delivery_id)
    assert (failed["status"], failed["attempts"]) == ("failed", 1)
    assert failed["last_error"].startswith("reviews: GitHubBroken")
    await scenario.advance(5)  # the first backoff
    done = await logged(scenario, delivery_id)
    assert (done["status"], done["attempts"], done["last_error"]) == ("done", 2, None)
