"""The pull request end of a pipeline, through the real app: GitHub's webhooks about the PR a
pipeline opened end the pipeline, and review comments on it are answered by the review_response
agent knowing the pipeline's ticket and approved plan."""

from __future__ import annotations

from typing import Any

from tests.fakes import anthropic as scripted
from tests.pipelines.world import REPO, PipelineWorld, report
from web.keys import SERVICES

PLAN = "1. Change greet() to say Hello.\n2. Keep the test."  # the planner's default report
DESCRIPTION = "Customers find 'Hi' too casual."


async def pipeline_pull_request(world: PipelineWorld, **ticket: Any) -> tuple[dict[str, Any], int]:
    """A pipeline waiting for the review of the pull request it opened, and its number."""
    opened = await world.open_pull_request(**ticket)
    [pull] = opened["pull_requests"]
    assert pull["repository"] == REPO
    return opened, int(pull["number"])


async def worktree_of(world: PipelineWorld, branch: str) -> dict[str, Any]:
    answer = await world.api("GET", "/api/worktrees?all=1")
    return next(session for session in answer["worktrees"] if session["branch"] == branch)


async def test_a_merged_pipeline_pull_request_completes_its_pipeline_and_removes_its_worktree(
    world: PipelineWorld,
) -> None:
    await world.start()
    opened, number = await pipeline_pull_request(world)
    assert (await worktree_of(world, opened["branch"]))["status"] == "ready"

    await world.webhooks.send("pull_request", world.webhooks.closed(number, merged=True))

    done = await world.pipeline(opened["id"])
    assert done["status"] == "completed" and done["finished_at"] is not None
    assert [pull["state"] for pull in done["pull_requests"]] == ["merged"]
    events = await world.events(opened["id"])
    [completed] = [event for event in events if event["type"] == "pipeline_completed"]
    assert completed["data"]["pr_url"] == done["pull_requests"][0]["url"]
    worktree = await worktree_of(world, opened["branch"])
    assert worktree["status"] == "cleaned"
    live = (await world.api("GET", "/api/worktrees"))["worktrees"]
    assert all(session["branch"] != opened["branch"] for session in live)


async def test_a_closed_delivery_again_changes_nothing(world: PipelineWorld) -> None:
    await world.start()
    opened, number = await pipeline_pull_request(world)
    closed = world.webhooks.closed(number, merged=True)
    await world.webhooks.send("pull_request", closed)
    before = await world.events(opened["id"])

    await world.webhooks.send("pull_request", closed)  # GitHub sent it twice

    assert (await world.pipeline(opened["id"]))["status"] == "completed"
    assert await world.events(opened["id"]) == before


async def test_a_pipeline_pull_request_closed_unmerged_cancels_its_pipeline(
    world: PipelineWorld,
) -> None:
    await world.start()
    opened, number = await pipeline_pull_request(world)

    await world.webhooks.send("pull_request", world.webhooks.closed(number, merged=False))

    cancelled = await world.pipeline(opened["id"])
    assert cancelled["status"] == "cancelled"
    assert [pull["state"] for pull in cancelled["pull_requests"]] == ["closed"]
    kinds = [event["type"] for event in await world.events(opened["id"])]
    assert "pipeline_cancelled" in kinds and "pipeline_completed" not in kinds


async def test_a_pull_request_no_pipeline_opened_ends_no_pipeline(world: PipelineWorld) -> None:
    await world.start()
    opened, number = await pipeline_pull_request(world)
    someone_elses = dict(world.github.pulls[(REPO, number)], number=number + 1)
    world.github.add_pull_request(REPO, someone_elses)

    await world.webhooks.send("pull_request", world.webhooks.closed(number + 1, merged=True))

    assert (await world.pipeline(opened["id"]))["status"] == "waiting_for_review"


async def test_review_comments_on_a_pipeline_pull_request_are_answered_knowing_its_ticket_and_plan(
    world: PipelineWorld,
) -> None:
    await world.start()
    opened, number = await pipeline_pull_request(world, description=DESCRIPTION)
    await world.webhooks.send("pull_request", world.webhooks.opened(number))
    comment = world.webhooks.review_comment(
        number, "Please greet with a comma.", path="greet.py", line=2
    )
    comment_id = comment["comment"]["id"]
    world.model.script(
        "review_response",
        scripted.tool_use(
            "edit_file", {"path": "greet.py", "old_text": '"Hello "', "new_text": '"Hello, "'}
        ),
        report(
            {
                "outcomes": [
                    {"comment_id": comment_id, "outcome": "fixed", "explanation": "Comma added."}
                ],
                "summary": "Greet with a comma",
            }
        ),
    )

    await world.webhooks.send("pull_request_review_comment", comment)
    await world.clock.advance(31)  # the review debounce closes
    await world.settle_reviews()

    [first, *_] = world.model.requests_of("review_response")
    task = first.messages[0]["content"][0]["text"]
    assert f"comes from biagent's pipeline for {opened['ticket']}" in task
    assert "Greet people by saying Hello" in task and DESCRIPTION in task  # the ticket
    assert PLAN in task
    assert "Please greet with a comma." in task
    [reply] = world.github.replies_to(comment_id)
    assert "**Fixed**" in reply["body"]
    assert world.branch_file(opened["branch"], "greet.py").count('"Hello, "') == 1


async def test_a_pipeline_pull_request_is_watched_before_biagent_knows_its_own_login(
    world: PipelineWorld,
) -> None:
    world.github.script_failure("GET", "/app", status=500, times=10_000)  # GET /app unanswered
    await world.start()
    _, number = await pipeline_pull_request(world)
    github = world.app_client.app[SERVICES].github
    assert github is not None and github.identity is None

    await world.webhooks.send("pull_request", world.webhooks.opened(number))

    watched = (await world.api("GET", "/api/pull-requests"))["pull_requests"]
    assert [(pr["repository"], pr["number"]) for pr in watched] == [(REPO, number)]
