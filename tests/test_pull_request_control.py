"""POST /api/pull-requests/{id}/pause|resume|retry: what the slash commands do, from the status
page or any API client, through the real app with the GitHub fake and the scripted engine."""

from __future__ import annotations

from tests.conftest import AppClient
from tests.helpers import API_TOKEN, auth_headers
from tests.reviews_scenario import Scenario


async def reviewed(scenario: Scenario) -> None:
    """A review comment gathered, worked by the scripted engine and answered."""
    await scenario.send("pull_request_review_comment", scenario.review_comment("rename x"))
    await scenario.advance(31)


async def control(client: AppClient, action: str, status: int = 200) -> dict:
    response = await client.post(
        f"/api/pull-requests/1/{action}", json={"by": "mia"}, headers=auth_headers()
    )
    body = await response.json()
    assert response.status == status, body
    return body


async def test_pause_resume_and_retry_do_what_the_slash_commands_do(scenario: Scenario) -> None:
    await reviewed(scenario)
    client = scenario.client
    assert client is not None
    paused = await control(client, "pause")
    assert paused["pull_request"]["paused"] is True
    assert paused["pull_request"]["pause_reason"] == "paused by mia"
    again = await control(client, "pause", status=409)
    assert again["error"] == {
        "code": "conflicting_state",
        "message": "biagent was already paused here.",
    }
    refused = await control(client, "retry", status=409)
    assert "resume" in refused["error"]["message"]
    resumed = await control(client, "resume")
    assert resumed["pull_request"]["paused"] is False and resumed["message"] == "resumed."
    retried = await control(client, "retry")
    assert retried["message"] == "working the comments of batch 1 again."
    await scenario.settle()
    assert len(scenario.engine.batches) == 2
    # The page's actions answer the page; the PR's conversation has only the batches' replies.
    said = " ".join(comment["body"] for comment in scenario.pr_comments())
    assert "paused" not in said and "resumed" not in said and "again" not in said


async def test_a_pull_request_action_needs_a_known_id_and_the_cookie_from_our_origin(
    scenario: Scenario,
) -> None:
    client = scenario.client
    assert client is not None
    missing = await client.post("/api/pull-requests/9/pause", headers=auth_headers())
    assert missing.status == 404
    await client.get("/login", params={"token": API_TOKEN}, allow_redirects=False)
    foreign = await client.post(
        "/api/pull-requests/1/pause", headers={"Origin": "https://evil.example"}
    )
    assert foreign.status == 403
    host = str(client.make_url("/")).rstrip("/")
    ours = await client.post("/api/pull-requests/1/pause", headers={"Origin": host})
    assert ours.status == 200
