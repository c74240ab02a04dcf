"""Review response end to end: real app, signed real payloads, GitHub fake, scripted engine.
This file: batching, threads, approvals, pauses, restarts and the pages; GitHub answering
errors is in test_reviews_github_failures.py."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import pytest

from bot.reviews.engine import CommentOutcome, EngineResult, EngineStatus, OutcomeKind
from tests.fakes.review_engine import fake_sha
from tests.reviews_scenario import NUMBER, REPO, REVIEWER, Scenario, three_comments_and_review


async def test_three_comments_and_a_review_make_one_run_with_threaded_replies(
    scenario: Scenario,
) -> None:
    ids = await three_comments_and_review(scenario)
    assert len(scenario.engine.batches) == 1
    batch = scenario.engine.batches[0]
    assert [c.comment_id for c in batch.comments] == ids
    assert batch.clone_url == "file:///srv/git/hello-world.git"
    assert batch.comments[0].path == "README.md" and batch.comments[0].diff_hunk
    replies = scenario.replies()
    assert sorted(r["in_reply_to_id"] for r in replies) == sorted(ids)
    assert all("**Fixed** in " + fake_sha(batch)[:7] in r["body"] for r in replies)
    assert all("<!-- biagent:reply:" in r["body"] for r in replies)
    summaries = scenario.pr_comments()
    assert len(summaries) == 1 and "3 fixed" in summaries[0]["body"]
    (check_run,) = scenario.check_runs()
    assert check_run["name"] == "biagent/review"
    assert scenario.fake.check_run_history[check_run["id"]] == [
        ("queued", None),
        ("in_progress", None),
        ("completed", "success"),
    ]
    assert "| fixed |" not in check_run["output"]["summary"]  # titles, not codes
    assert "Fixed" in check_run["output"]["summary"] and "$0.25" in check_run["output"]["summary"]
    eyes = [r for r in scenario.fake.reactions if r["content"] == "eyes"]
    assert sorted(r["_comment_id"] for r in eyes) == sorted(ids)


async def test_replayed_deliveries_change_nothing(scenario: Scenario) -> None:
    comment = scenario.review_comment("Rename this variable.")
    delivery = await scenario.send("pull_request_review_comment", comment)
    review = scenario.review("changes_requested", comment_ids=[comment["comment"]["id"]])
    await scenario.send("pull_request_review", review)
    await scenario.settle()
    before = (len(scenario.fake.calls), len(scenario.engine.batches))
    await scenario.send("pull_request_review_comment", comment, delivery_id=delivery)
    await scenario.send("pull_request_review_comment", comment)  # a new delivery id, same event
    await scenario.send("pull_request_review", review)
    await scenario.advance(600)
    assert len(scenario.engine.batches) == before[1] == 1
    writes = [c for c in scenario.fake.calls[before[0] :] if c.method in ("POST", "PATCH")]
    assert writes == []
    assert len(scenario.replies()) == 1 and len(scenario.pr_comments()) == 1


async def test_batch_is_due_after_the_quiet_window_and_never_after_the_cap(
    scenario: Scenario,
) -> None:
    await scenario.send("pull_request_review_comment", scenario.review_comment("one"))
    await scenario.advance(29)
    assert scenario.engine.batches == []
    await scenario.advance(2)
    assert len(scenario.engine.batches) == 1
    # A steady trickle keeps the window open, but the cap (300 s after the first) closes it.
    for _ in range(15):
        await scenario.send("pull_request_review_comment", scenario.review_comment("more"))
        await scenario.advance(20)
    assert len(scenario.engine.batches) == 2
    assert len(scenario.engine.batches[1].comments) == 15


async def test_restart_between_second_and_third_comment_keeps_one_batch(
    scenario: Scenario,
) -> None:
    first = scenario.review_comment("one")
    second = scenario.review_comment("two")
    await scenario.send("pull_request_review_comment", first)
    await scenario.advance(5)
    await scenario.send("pull_request_review_comment", second)
    await scenario.restart()
    third = scenario.review_comment("three")
    await scenario.send("pull_request_review_comment", third)
    await scenario.advance(31)
    assert len(scenario.engine.batches) == 1
    assert len(scenario.engine.batches[0].comments) == 3
    assert await scenario.db.fetchval("SELECT COUNT(*) FROM review_batches") == 1


async def test_a_pending_batch_fires_at_its_due_time_after_a_restart(scenario: Scenario) -> None:
    await scenario.send("pull_request_review_comment", scenario.review_comment("one"))
    await scenario.restart()
    await scenario.advance(20)
    assert scenario.engine.batches == []
    await scenario.clock.advance(11)
    for _ in range(500):  # the scheduler's own loop, not drain(), must fire it
        if scenario.engine.batches:
            break
        await asyncio.sleep(0.01)
    assert len(scenario.engine.batches) == 1


async def test_a_comment_during_the_run_goes_into_a_second_batch(scenario: Scenario) -> None:
    from web.keys import REVIEW_SCHEDULER

    first = scenario.review_comment("one")
    await scenario.send("pull_request_review_comment", first)
    scenario.engine.hold()
    await scenario.clock.advance(31)
    assert scenario.client is not None
    draining = asyncio.create_task(scenario.client.app[REVIEW_SCHEDULER].drain())
    await asyncio.wait_for(scenario.engine.started.wait(), 5)
    edited = scenario.review_comment(
        "one, edited", comment_id=first["comment"]["id"], action="edited"
    )
    late = scenario.review_comment("late")
    await scenario.send("pull_request_review_comment", edited)
    await scenario.send("pull_request_review_comment", late)
    scenario.engine.release()
    await draining
    assert [c.body for c in scenario.engine.batches[0].comments] == ["one"]
    await scenario.advance(31)
    assert len(scenario.engine.batches) == 2
    assert sorted(c.body for c in scenario.engine.batches[1].comments) == ["late", "one, edited"]


async def test_a_reply_in_an_existing_thread_is_answered_at_the_root(scenario: Scenario) -> None:
    root = scenario.review_comment("Is this thread-safe?")
    await scenario.send("pull_request_review_comment", root)
    await scenario.advance(31)
    root_id = root["comment"]["id"]
    await scenario.advance(60)
    follow_up = scenario.review_comment("Still not convinced.", in_reply_to=root_id)
    await scenario.send("pull_request_review_comment", follow_up)
    await scenario.advance(31)
    assert len(scenario.engine.batches) == 2
    second = scenario.engine.batches[1].comments[0]
    assert second.thread_root_id == root_id
    assert second.thread[0].body == "Is this thread-safe?"
    assert [m.comment_id for m in second.thread][-1] == follow_up["comment"]["id"]
    assert any(m.by_biagent for m in second.thread)  # its own first answer is in the thread
    posts = scenario.fake.calls_to("POST", f"/repos/{REPO}/pulls/2/comments/")
    assert [c.path.split("/")[-2] for c in posts] == [str(root_id), str(root_id)]
    assert len(scenario.replies()) == 2


async def test_an_omitted_outcome_is_answered_not_addressed(scenario: Scenario) -> None:
    def skip_second(batch: Any) -> EngineResult:
        first, _second, third = batch.comments
        return EngineResult(
            EngineStatus.COMPLETED,
            (
                CommentOutcome(first.comment_id, OutcomeKind.FIXED, commit_sha="a" * 40),
                CommentOutcome(third.comment_id, OutcomeKind.QUESTION, question="Which one?"),
            ),
            commit_sha="a" * 40,
            tests_summary="3 passed",
            cost_usd=0.1,
        )

    scenario.engine.script = skip_second
    ids = await three_comments_and_review(scenario)
    by_root = {r["in_reply_to_id"]: r["body"] for r in scenario.replies()}
    assert "**Fixed** in aaaaaaa" in by_root[ids[0]]
    assert "**Not addressed**: the agent finished without reporting" in by_root[ids[1]]
    assert "**Question**: Which one?" in by_root[ids[2]]
    (check_run,) = scenario.check_runs()
    assert check_run["conclusion"] == "neutral"


async def test_an_approval_runs_nothing_and_drops_pending_work(scenario: Scenario) -> None:
    comment = scenario.review_comment("nit: spacing")
    await scenario.send("pull_request_review_comment", comment)
    await scenario.send(
        "pull_request_review", scenario.review("approved", comment_ids=[], author="JasonEtco")
    )
    await scenario.advance(400)
    assert scenario.engine.batches == []
    (note,) = scenario.pr_comments()
    assert "approved" in note["body"] and "dropped the 1 review comment" in note["body"]
    (check_run,) = scenario.check_runs()
    assert check_run["conclusion"] == "neutral"
    detail = await scenario.api("/api/pull-requests/1")
    assert detail["pull_request"]["review_state"] == "approved"
    assert detail["pull_request"]["batches"][0]["status"] == "dropped"
    types = [t for (t,) in await scenario.db.fetchall("SELECT type FROM events")]
    assert "pr_approved" in types


async def test_own_comments_and_other_bots_are_ignored(scenario: Scenario) -> None:
    own = scenario.review_comment("Fixed.", author="biagent-test[bot]", bot=True)
    marked = scenario.review_comment("quoted\n\n<!-- biagent:reply:1:review_comment:1 -->")
    other_bot = scenario.review_comment("Coverage dropped.", author="codecov[bot]", bot=True)
    for payload in (own, marked, other_bot):
        await scenario.send("pull_request_review_comment", payload)
    await scenario.advance(400)
    assert scenario.engine.batches == []
    assert scenario.check_runs() == []


async def test_allowed_bot_comments_are_worked(scenario: Scenario) -> None:
    scenario.fake.set_file(
        REPO, ".github/biagent.yml", 'reviews:\n  allowed_bots: ["codecov[bot]"]\n'
    )
    payload = scenario.review_comment("Coverage dropped.", author="codecov[bot]", bot=True)
    await scenario.send("pull_request_review_comment", payload)
    await scenario.advance(31)
    assert len(scenario.engine.batches) == 1


async def test_own_push_is_ignored_and_a_person_push_resets_the_commit_count(
    scenario: Scenario,
) -> None:
    await three_comments_and_review(scenario)
    pushed = fake_sha(scenario.engine.batches[0])
    query = "SELECT consecutive_commits, head_sha FROM pull_requests"
    assert tuple(await scenario.db.fetchone(query)) == (1, pushed)
    await scenario.send("pull_request", scenario.synchronize(pushed, sender="biagent-test[bot]"))
    assert tuple(await scenario.db.fetchone(query)) == (1, pushed)
    await scenario.send("pull_request", scenario.synchronize("b" * 40, sender="Codertocat"))
    assert tuple(await scenario.db.fetchone(query)) == (0, "b" * 40)


async def test_a_cap_reached_pauses_with_a_neutral_check_and_resume_goes_on(
    scenario: Scenario,
) -> None:
    scenario.fake.set_file(REPO, ".github/biagent.yml", "reviews:\n  caps:\n    runs_per_hour: 1\n")
    await scenario.send("pull_request_review_comment", scenario.review_comment("one"))
    await scenario.advance(31)
    await scenario.send("pull_request_review_comment", scenario.review_comment("two"))
    await scenario.advance(31)
    await scenario.send("pull_request_review_comment", scenario.review_comment("three"))
    await scenario.advance(31)
    assert len(scenario.engine.batches) == 1
    pauses = [c for c in scenario.pr_comments() if "paused itself" in c["body"]]
    assert len(pauses) == 1 and "/biagent resume" in pauses[0]["body"]
    assert "1 runs per hour" in pauses[0]["body"]
    last_check = max(scenario.check_runs(), key=lambda c: c["id"])
    assert (last_check["status"], last_check["conclusion"]) == ("completed", "neutral")
    await scenario.send("issue_comment", scenario.issue_comment("/biagent resume"))
    await scenario.settle()
    assert len(scenario.engine.batches) == 2
    assert [c.body for c in scenario.engine.batches[1].comments] == ["two", "three"]


async def test_a_deleted_comment_leaves_its_pending_batch(scenario: Scenario) -> None:
    keep = scenario.review_comment("keep")
    gone = scenario.review_comment("gone")
    await scenario.send("pull_request_review_comment", keep)
    await scenario.send("pull_request_review_comment", gone)
    deleted = scenario.review_comment("gone", comment_id=gone["comment"]["id"], action="deleted")
    await scenario.send("pull_request_review_comment", deleted)
    await scenario.advance(31)
    assert [c.body for c in scenario.engine.batches[0].comments] == ["keep"]


async def test_check_run_rerun_works_the_batch_again(scenario: Scenario) -> None:
    from tests.helpers import load_json

    await three_comments_and_review(scenario)
    (check_run,) = scenario.check_runs()
    payload = load_json("github/check_run/rerequested.payload.json")
    payload["repository"] = scenario.repository
    payload["installation"] = scenario.installation
    payload["check_run"].update(
        {"id": check_run["id"], "name": "biagent/review", "app": {"id": scenario.fake.app_id}}
    )
    await scenario.send("check_run", payload)
    await scenario.settle()
    assert len(scenario.engine.batches) == 2
    assert len(scenario.engine.batches[1].comments) == 3
    assert len(scenario.replies()) == 6  # a new iteration answers again, once per comment


async def test_budget_stop_concludes_neutral_and_says_how_to_retry(scenario: Scenario) -> None:
    scenario.engine.script = lambda batch: EngineResult(
        EngineStatus.BUDGET_STOPPED, (), cost_usd=2.0, error="budget of $2.00 reached"
    )
    await three_comments_and_review(scenario)
    (check_run,) = scenario.check_runs()
    assert check_run["conclusion"] == "neutral"
    assert all("reached its budget" in r["body"] for r in scenario.replies())
    (summary,) = scenario.pr_comments()
    assert "/biagent retry" in summary["body"]


async def test_api_lists_pull_requests_with_batches_and_cost(scenario: Scenario) -> None:
    await three_comments_and_review(scenario)
    listed = await scenario.api("/api/pull-requests")
    (row,) = listed["pull_requests"]
    assert (row["repository"], row["number"], row["watched_because"]) == (
        REPO,
        2,
        "opened_by_biagent",
    )
    assert row["cost_usd"] == 0.25
    detail = (await scenario.api(f"/api/pull-requests/{row['id']}"))["pull_request"]
    (batch,) = detail["batches"]
    assert [item["outcome"] for item in batch["items"]] == ["fixed"] * 3
    assert detail["iterations"][0]["number"] == 1
    assert {r["kind"] for r in detail["replies"]} == {"thread", "summary"}
    assert all(r["status"] == "posted" and r["github_id"] for r in detail["replies"])


async def test_status_page_shows_pending_batch_countdown(scenario: Scenario) -> None:
    from tests.helpers import API_TOKEN

    await scenario.send("pull_request_review_comment", scenario.review_comment("one"))
    await scenario.clock.advance(10)
    assert scenario.client is not None
    page = await scenario.client.get("/", headers={"Authorization": f"Bearer {API_TOKEN}"})
    html = await page.text()
    assert "Pull requests under review" in html
    assert 'class="countdown"' in html and ">in 20 s<" in html


async def test_a_stop_between_posting_and_recording_never_replies_twice(
    scenario: Scenario,
) -> None:
    await three_comments_and_review(scenario)
    # As if the process had stopped right after GitHub accepted one reply, before its id was
    # stored: the batch is still responding and that reply is only an intent.
    await scenario.db.write(
        "UPDATE review_replies SET status = 'intent', github_id = NULL"
        " WHERE id = (SELECT MIN(id) FROM review_replies)"
    )
    await scenario.db.write("UPDATE review_batches SET status = 'responding'")
    posts_before = len(scenario.fake.calls_to("POST", f"/repos/{REPO}/"))
    await scenario.restart()
    await scenario.settle()
    assert len(scenario.replies()) == 3 and len(scenario.pr_comments()) == 1
    assert len(scenario.fake.calls_to("POST", f"/repos/{REPO}/")) == posts_before
    statuses = {s for (s,) in await scenario.db.fetchall("SELECT status FROM review_replies")}
    assert statuses == {"posted"}


async def test_a_head_moved_while_gathering_gets_the_check_run_on_the_new_commit(
    scenario: Scenario,
) -> None:
    await scenario.send("pull_request_review_comment", scenario.review_comment("one"))
    await scenario.send("pull_request", scenario.synchronize("e" * 40, sender="Codertocat"))
    await scenario.advance(31)
    old, new = sorted(scenario.check_runs(), key=lambda c: c["id"])
    assert (old["head_sha"], old["conclusion"]) != ("e" * 40, None)
    assert old["conclusion"] == "neutral" and new["head_sha"] == "e" * 40
    assert new["conclusion"] == "success"
    assert scenario.engine.batches[0].head_sha == "e" * 40


@pytest.mark.parametrize("review_first", [True, False], ids=["review-first", "comment-first"])
async def test_an_approvals_inline_comment_never_starts_a_run(
    scenario: Scenario, review_first: bool
) -> None:
    # GitHub sends an approval's inline comments as their own webhooks, in no set order.
    comment = scenario.review_comment("nit: spacing", review_id=950)
    review = scenario.review(
        "approved", review_id=950, comment_ids=[comment["comment"]["id"]], author="JasonEtco"
    )
    events = [("pull_request_review", review), ("pull_request_review_comment", comment)]
    for event, payload in events if review_first else events[::-1]:
        await scenario.send(event, payload)
    await scenario.advance(400)
    assert scenario.engine.batches == []
    assert all(c["status"] == "completed" for c in scenario.check_runs())


async def test_an_approvals_inline_comments_cost_one_look_up_of_the_review(
    scenario: Scenario,
) -> None:
    comments = [scenario.review_comment(f"nit {n}", review_id=951) for n in range(3)]
    scenario.review("approved", review_id=951, comment_ids=[c["comment"]["id"] for c in comments])
    for comment in comments:  # the comments come before their review's webhook
        await scenario.send("pull_request_review_comment", comment)
    await scenario.advance(400)
    assert scenario.engine.batches == []
    looked_up = scenario.fake.calls_to("GET", f"/repos/{REPO}/pulls/{NUMBER}/reviews/951")
    assert len(looked_up) == 1


async def test_a_late_older_approval_keeps_newer_work(scenario: Scenario) -> None:
    old_approval = scenario.review("approved", review_id=940)
    await scenario.clock.advance(60)
    await scenario.send("pull_request_review", scenario.review("changes_requested", review_id=941))
    await scenario.send("pull_request_review_comment", scenario.review_comment("Rename this."))
    await scenario.send("pull_request_review", old_approval)  # delivered late
    await scenario.advance(400)
    assert len(scenario.engine.batches) == 1
    detail = await scenario.api("/api/pull-requests/1")
    assert detail["pull_request"]["review_state"] == "changes_requested"


async def test_a_comment_review_keeps_an_earlier_change_request(scenario: Scenario) -> None:
    await scenario.send("pull_request_review", scenario.review("changes_requested", review_id=1))
    await scenario.clock.advance(60)
    await scenario.send("pull_request_review", scenario.review("commented", review_id=2))
    detail = await scenario.api("/api/pull-requests/1")
    assert detail["pull_request"]["review_state"] == "changes_requested"


async def test_closing_the_pr_concludes_the_gathering_check_run(scenario: Scenario) -> None:
    await scenario.send("pull_request_review_comment", scenario.review_comment("one"))
    (check_run,) = scenario.check_runs()
    assert check_run["status"] == "queued"
    await scenario.send("pull_request", scenario.closed())
    await scenario.advance(400)
    assert scenario.engine.batches == []
    assert (check_run["status"], check_run["conclusion"]) == ("completed", "neutral")


async def test_single_comments_wait_for_the_quiet_window_together(scenario: Scenario) -> None:
    # "Add single comment" on GitHub: the comment, then a commented review of its own with no
    # body. Two of them 10 s apart are one batch, due 30 s after the second.
    for review_id in (931, 932):
        comment = scenario.review_comment("@biagent please fix", review_id=review_id)
        await scenario.send("pull_request_review_comment", comment)
        review = scenario.review(
            "commented", review_id=review_id, comment_ids=[comment["comment"]["id"]]
        )
        await scenario.send("pull_request_review", review)
        await scenario.advance(10)
    assert scenario.engine.batches == []
    await scenario.advance(21)
    assert len(scenario.engine.batches) == 1
    assert len(scenario.engine.batches[0].comments) == 2


async def test_the_summary_table_notifies_nobody_and_links_no_issue(scenario: Scenario) -> None:
    """Posted each iteration, the table quotes each comment: as code spans, so no `@login`
    pings its author or whoever it mentions, and no `#123` makes a backlink."""
    text = "@octocat said in #123 to use `total` | not sum, cc @org/devs"
    await scenario.send("pull_request_review_comment", scenario.review_comment(text))
    await scenario.advance(31)
    (summary,) = scenario.pr_comments()
    (check_run,) = scenario.check_runs()
    for body in (summary["body"], check_run["output"]["summary"]):
        (row,) = [line for line in body.splitlines() if line.startswith("| `@")]
        quoted = "`@octocat said in #123 to use 'total' \\| not sum, cc @org/devs`"
        assert row.startswith(f"| `@{REVIEWER}`: {quoted} |")
        outside = re.sub(r"`[^`]*`", "", body)
        assert "@" not in outside and "#123" not in outside
