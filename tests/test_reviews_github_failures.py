"""Review response when GitHub fails: replies refused or written before a 502, check runs
created before a 502, batches that keep failing, pause comments that fail. Real app, signed
real payloads, GitHub fake scripting the failures, scripted engine."""

from __future__ import annotations

from typing import Any

from storage import review_batches
from tests.reviews_scenario import NUMBER, REPO, Scenario


async def test_a_reply_github_refuses_is_answered_in_the_summary_and_frees_the_pr(
    scenario: Scenario,
) -> None:
    scenario.fake.script_failure(
        "POST", rf"/repos/{REPO}/pulls/{NUMBER}/comments/\d+/replies", status=422, times=1
    )
    for text in ("Rename this.", "Add a test."):
        await scenario.send("pull_request_review_comment", scenario.review_comment(text))
    await scenario.advance(31)
    assert len(scenario.replies()) == 1  # one refused for good, the other posted
    (summary,) = scenario.pr_comments()
    assert "(no reply in its thread)" in summary["body"] and "> Rename this." in summary["body"]
    (check_run,) = scenario.check_runs()
    assert (check_run["status"], check_run["conclusion"]) == ("completed", "success")
    await scenario.send("pull_request_review_comment", scenario.review_comment("One more."))
    await scenario.advance(31)
    assert len(scenario.engine.batches) == 2  # the pull request is not held


async def test_a_reply_github_wrote_before_answering_502_is_not_posted_again(
    scenario: Scenario,
) -> None:
    scenario.fake.script_failure(
        "POST",
        rf"/repos/{REPO}/pulls/{NUMBER}/comments/\d+/replies",
        status=502,
        times=1,
        after_handling=True,
    )
    await scenario.send("pull_request_review_comment", scenario.review_comment("Rename this."))
    await scenario.work_with_retries(60)
    await scenario.settle()
    assert len(scenario.replies()) == 1
    replies = scenario.fake.calls_to("POST", f"/repos/{REPO}/pulls/{NUMBER}/comments/")
    assert len(replies) == 1  # found by its marker on the retry, not posted again
    assert len(scenario.pr_comments()) == 1
    (row,) = await scenario.db.fetchall("SELECT status FROM review_replies WHERE kind = 'thread'")
    assert tuple(row) == ("posted",)


def check_run_created_then_502(scenario: Scenario) -> None:
    """The next check run is created on GitHub, and the POST that made it answers 502."""
    scenario.fake.script_failure(
        "POST", rf"/repos/{REPO}/check-runs", status=502, times=1, after_handling=True
    )


def check_run_lists(scenario: Scenario) -> list[Any]:
    return scenario.fake.calls_to("GET", f"/repos/{REPO}/commits/")


async def test_a_check_run_github_created_before_answering_502_is_not_opened_again(
    scenario: Scenario,
) -> None:
    check_run_created_then_502(scenario)
    await scenario.send("pull_request_review_comment", scenario.review_comment("Rename this."))
    await scenario.work_with_retries(60)
    await scenario.settle()
    (check_run,) = scenario.check_runs()  # found by its external_id on the retry, adopted
    assert (check_run["status"], check_run["conclusion"]) == ("completed", "success")
    assert check_run["external_id"] == "1.1"
    assert len(scenario.fake.calls_to("POST", f"/repos/{REPO}/check-runs")) == 1
    (listed,) = check_run_lists(scenario)
    assert listed.path.endswith(f"/commits/{check_run['head_sha']}/check-runs")
    assert listed.query["check_name"] == "biagent/review" and listed.query["per_page"] == "100"
    assert len(scenario.replies()) == 1 and len(scenario.pr_comments()) == 1
    (batch,) = await review_batches.list_batches(scenario.db, 1)
    assert (batch.status, batch.check_run_id) == ("done", check_run["id"])


async def test_a_check_run_opened_at_pick_up_that_answered_502_is_not_opened_again(
    scenario: Scenario,
) -> None:
    await scenario.send("pull_request_review_comment", scenario.review_comment("one"))
    await scenario.send("pull_request", scenario.synchronize("e" * 40, sender="Codertocat"))
    check_run_created_then_502(scenario)
    await scenario.work_with_retries(60)
    await scenario.settle()
    old, new = sorted(scenario.check_runs(), key=lambda c: c["id"])
    assert old["head_sha"] != "e" * 40 and old["conclusion"] == "neutral"
    assert (new["head_sha"], new["status"], new["conclusion"]) == ("e" * 40, "completed", "success")
    assert (old["external_id"], new["external_id"]) == ("1.1", "1.2")
    assert len(scenario.engine.batches) == 1 and len(scenario.replies()) == 1


async def test_a_check_run_created_before_a_502_on_a_commit_left_behind_is_concluded(
    scenario: Scenario,
) -> None:
    check_run_created_then_502(scenario)
    await scenario.send("pull_request_review_comment", scenario.review_comment("one"))
    await scenario.send("pull_request", scenario.synchronize("e" * 40, sender="Codertocat"))
    await scenario.work_with_retries(60)
    await scenario.settle()
    old, new = sorted(scenario.check_runs(), key=lambda c: c["id"])
    assert old["head_sha"] != "e" * 40
    assert (old["status"], old["conclusion"]) == ("completed", "neutral")
    assert (new["head_sha"], new["conclusion"]) == ("e" * 40, "success")
    assert new["external_id"] == "1.2"


async def test_a_check_run_that_was_not_created_is_created_with_the_same_key(
    scenario: Scenario,
) -> None:
    scenario.fake.script_failure("POST", rf"/repos/{REPO}/check-runs", status=502, times=1)
    await scenario.send("pull_request_review_comment", scenario.review_comment("one"))
    await scenario.advance(31)
    (check_run,) = scenario.check_runs()
    assert (check_run["external_id"], check_run["conclusion"]) == ("1.1", "success")
    assert len(check_run_lists(scenario)) == 1


async def test_a_batch_that_keeps_failing_ends_neutral_and_frees_the_pr(
    scenario: Scenario,
) -> None:
    scenario.fake.script_failure(
        "POST", rf"/repos/{REPO}/issues/{NUMBER}/comments", status=503, times=6
    )
    await scenario.send("pull_request_review_comment", scenario.review_comment("one"))
    await scenario.work_with_retries(400)
    (first,) = await review_batches.list_batches(scenario.db, 1)
    assert first.status == "failed"
    (check_run,) = scenario.check_runs()
    assert (check_run["status"], check_run["conclusion"]) == ("completed", "neutral")
    await scenario.send("pull_request_review_comment", scenario.review_comment("two"))
    await scenario.advance(31)
    assert len(scenario.engine.batches) == 2
    assert len(scenario.pr_comments()) == 1  # the second batch's summary


async def test_a_pause_comment_that_fails_is_posted_on_the_next_attempt(
    scenario: Scenario,
) -> None:
    scenario.fake.set_file(REPO, ".github/biagent.yml", "reviews:\n  caps:\n    runs_per_hour: 1\n")
    await scenario.send("pull_request_review_comment", scenario.review_comment("one"))
    await scenario.advance(31)
    await scenario.send("pull_request_review_comment", scenario.review_comment("two"))
    scenario.fake.script_failure(
        "POST", rf"/repos/{REPO}/issues/{NUMBER}/comments", status=502, times=1
    )
    await scenario.work_with_retries(120)
    pauses = [c for c in scenario.pr_comments() if "paused itself" in c["body"]]
    assert len(pauses) == 1
    assert tuple(await scenario.db.fetchone("SELECT paused FROM pull_requests")) == (1,)
    assert all(c["status"] == "completed" for c in scenario.check_runs())
