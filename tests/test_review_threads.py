"""After a pushed iteration, end to end: the threads it fixed resolved over GraphQL, the
reviewers re-requested once, a reopened thread or a follow-up worked again in context.

The real app, signed real payloads (the `pull_request_review_thread` ones included), the GitHub
fake's GraphQL and requested_reviewers (tests/fakes/github_graphql.py), a scripted engine.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from bot.reviews.engine import CommentOutcome, EngineResult, EngineStatus, OutcomeKind, ReviewBatch
from tests.fakes.review_engine import fake_sha
from tests.reviews_scenario import BOT, NUMBER, REPO, REVIEWER, Scenario, thread_event
from web.keys import REVIEW_SCHEDULER

RULES = ".github/biagent.yml"


async def comments_and_review(scenario: Scenario, texts: list[str], **review: Any) -> list[int]:
    ids = []
    for text in texts:
        payload = scenario.review_comment(text)
        ids.append(payload["comment"]["id"])
        await scenario.send("pull_request_review_comment", payload)
    await scenario.send(
        "pull_request_review", scenario.review("changes_requested", comment_ids=ids, **review)
    )
    await scenario.settle()
    return ids


def outcomes(*kinds: OutcomeKind) -> Any:
    """A script answering the batch's comments in order with `kinds`, fixes in one commit."""

    def script(batch: ReviewBatch) -> EngineResult:
        sha = fake_sha(batch)
        said = []
        for comment, kind in zip(batch.comments, kinds, strict=True):
            if kind is OutcomeKind.FIXED:
                said.append(CommentOutcome(comment.comment_id, kind, commit_sha=sha))
            elif kind is OutcomeKind.DECLINED:
                said.append(CommentOutcome(comment.comment_id, kind, reason="It is intended."))
            else:
                said.append(CommentOutcome(comment.comment_id, kind, question="Which case?"))
        return EngineResult(EngineStatus.COMPLETED, tuple(said), commit_sha=sha, cost_usd=0.1)

    return script


def graphql_calls(scenario: Scenario) -> list[Any]:
    return scenario.fake.calls_to("POST", "/graphql")


async def test_fixed_threads_are_resolved_and_the_reviewer_is_rerequested_once(
    scenario: Scenario,
) -> None:
    ids = await comments_and_review(scenario, ["Rename this.", "Add a test.", "Use a set."])
    threads = scenario.fake.threads
    assert sorted(threads.resolved_by_mutation) == sorted(ids)
    assert threads.review_requests == [(REPO, NUMBER, [REVIEWER])]
    assert threads.requested_of(REPO, NUMBER) == [REVIEWER]
    # Replies first: each thread holds its answer when it is resolved.
    assert sorted(r["in_reply_to_id"] for r in scenario.replies()) == sorted(ids)
    detail = (await scenario.api("/api/pull-requests/1"))["pull_request"]
    assert all(c["resolved"] for c in detail["comments"] if c["id"] in ids)
    actions = [(a["kind"], a["status"]) for a in detail["actions"]]
    assert actions.count(("resolve_thread", "done")) == 3
    assert actions.count(("rerequest_review", "done")) == 1
    queries = len(graphql_calls(scenario))
    await scenario.restart()  # a second pass over the same iteration does nothing
    await scenario.advance(600)
    assert threads.review_requests == [(REPO, NUMBER, [REVIEWER])]
    assert len(graphql_calls(scenario)) == queries


async def test_declined_and_question_threads_are_left_open(scenario: Scenario) -> None:
    scenario.engine.script = outcomes(OutcomeKind.FIXED, OutcomeKind.DECLINED, OutcomeKind.QUESTION)
    fixed, declined, asked = await comments_and_review(
        scenario, ["Rename this.", "Drop the cache.", "Why a list?"]
    )
    threads = scenario.fake.threads
    assert threads.resolved_by_mutation == [fixed]
    assert declined not in threads.resolved and asked not in threads.resolved
    by_root = {r["in_reply_to_id"]: r["body"] for r in scenario.replies()}
    assert "**Not changed**: It is intended." in by_root[declined]
    assert threads.review_requests == [(REPO, NUMBER, [REVIEWER])]  # one comment was fixed


async def test_nothing_fixed_resolves_nothing_and_rerequests_nobody(scenario: Scenario) -> None:
    scenario.engine.script = outcomes(OutcomeKind.DECLINED)
    await comments_and_review(scenario, ["Drop the cache."])
    assert scenario.fake.threads.resolved == set()
    assert scenario.fake.threads.review_requests == []
    assert len(scenario.replies()) == 1


async def test_the_options_in_biagent_yml_turn_both_off(scenario: Scenario) -> None:
    scenario.fake.set_file(
        REPO, RULES, "reviews:\n  resolve_threads: false\n  rerequest_review: false\n"
    )
    await comments_and_review(scenario, ["Rename this.", "Add a test."])
    assert len(scenario.replies()) == 2
    assert graphql_calls(scenario) == []
    assert scenario.fake.calls_to("POST", f"/repos/{REPO}/pulls/{NUMBER}/requested_") == []


async def test_one_option_off_keeps_the_other(scenario: Scenario) -> None:
    scenario.fake.set_file(REPO, RULES, "reviews:\n  rerequest_review: false\n")
    (comment,) = await comments_and_review(scenario, ["Rename this."])
    assert scenario.fake.threads.resolved_by_mutation == [comment]
    assert scenario.fake.threads.review_requests == []


async def test_an_approver_and_an_allowed_bot_are_never_rerequested(scenario: Scenario) -> None:
    scenario.fake.set_file(REPO, RULES, 'reviews:\n  allowed_bots: ["codecov[bot]"]\n')
    scenario.fake.set_permission(REPO, "alice", "write")
    by_alice = scenario.review_comment("Spacing.", author="alice", review_id=901)
    by_bot = scenario.review_comment("Coverage.", author="codecov[bot]", bot=True)
    mine = scenario.review_comment("Rename this.")
    for payload in (by_alice, by_bot, mine):
        await scenario.send("pull_request_review_comment", payload)
    scenario.engine.hold()
    review = scenario.review("changes_requested", comment_ids=[mine["comment"]["id"]])
    await scenario.send("pull_request_review", review)
    assert scenario.client is not None
    draining = asyncio.create_task(scenario.client.app[REVIEW_SCHEDULER].drain())
    await asyncio.wait_for(scenario.engine.started.wait(), 5)
    approval = scenario.review("approved", review_id=902, author="alice")
    await scenario.send("pull_request_review", approval)  # while the batch is being worked
    scenario.engine.release()
    await draining
    await scenario.settle()
    (batch,) = scenario.engine.batches
    assert len(batch.comments) == 3
    assert len(scenario.fake.threads.resolved_by_mutation) == 3
    assert scenario.fake.threads.review_requests == [(REPO, NUMBER, [REVIEWER])]


async def test_threads_are_found_across_pages(scenario: Scenario) -> None:
    scenario.fake.threads.page_size_limit = 2
    ids = await comments_and_review(scenario, ["one", "two", "three", "four", "five"])
    assert sorted(scenario.fake.threads.resolved_by_mutation) == sorted(ids)
    queries = [c for c in graphql_calls(scenario) if "reviewThreads" in c.body["query"]]
    assert len(queries) == 3  # 2 + 2 + 1 threads
    assert queries[0].body["variables"]["cursor"] is None
    assert queries[1].body["variables"]["cursor"]


async def test_a_rerequest_github_made_before_answering_502_is_not_made_again(
    scenario: Scenario,
) -> None:
    scenario.fake.script_failure(
        "POST",
        rf"/repos/{REPO}/pulls/{NUMBER}/requested_reviewers",
        status=502,
        after_handling=True,
    )
    await scenario.send("pull_request_review_comment", scenario.review_comment("Rename this."))
    await scenario.work_with_retries(60)
    await scenario.settle()
    assert scenario.fake.threads.review_requests == [(REPO, NUMBER, [REVIEWER])]
    posts = scenario.fake.calls_to("POST", f"/repos/{REPO}/pulls/{NUMBER}/requested_reviewers")
    assert len(posts) == 1  # found requested on the retry, not asked again
    looks = scenario.fake.calls_to("GET", f"/repos/{REPO}/pulls/{NUMBER}/requested_reviewers")
    assert len(looks) == 1
    (row,) = await scenario.db.fetchall(
        "SELECT status FROM review_actions WHERE kind = 'rerequest_review'"
    )
    assert tuple(row) == ("done",)
    assert len(scenario.replies()) == 1


async def test_a_follow_up_in_a_resolved_thread_is_worked_again_in_context(
    scenario: Scenario,
) -> None:
    (root,) = await comments_and_review(scenario, ["Rename this variable."])
    first_commit = fake_sha(scenario.engine.batches[0])
    assert scenario.fake.threads.resolved == {root}
    follow_up = scenario.review_comment("No, call it `total`.", in_reply_to=root, review_id=903)
    await scenario.send("pull_request_review_comment", follow_up)
    await scenario.send("pull_request_review", scenario.review("commented", review_id=903,
                        comment_ids=[follow_up["comment"]["id"]]))  # fmt: skip
    await scenario.advance(31)
    assert len(scenario.engine.batches) == 2
    (again,) = scenario.engine.batches[1].comments
    assert again.comment_id == follow_up["comment"]["id"] and again.thread_root_id == root
    (earlier,) = again.earlier
    assert (earlier.comment_id, earlier.outcome, earlier.commit_sha) == (
        root,
        "fixed",
        first_commit,
    )
    said_before = [m for m in again.thread if m.by_biagent]
    assert len(said_before) == 1 and first_commit[:7] in said_before[0].body
    answers = [a for a in scenario.fake.replies_to(root) if a["user"]["login"] == BOT]
    assert len(answers) == 2  # the answer to the follow-up is in the same thread
    assert "No, call it `total`." in answers[-1]["body"]
    # Already resolved: left so, not resolved twice; the reviewer asked again for this push.
    assert scenario.fake.threads.resolved_by_mutation == [root]
    assert len(scenario.fake.threads.review_requests) == 2


async def test_a_reopened_thread_is_worked_again_and_resolved_again(scenario: Scenario) -> None:
    (root,) = await comments_and_review(scenario, ["Rename this variable."])
    scenario.fake.threads.resolved.discard(root)  # the reviewer clicks "Unresolve"
    await scenario.send(
        "pull_request_review_thread", thread_event(scenario, "unresolved", root, sender=REVIEWER)
    )
    await scenario.advance(31)
    assert len(scenario.engine.batches) == 2
    (again,) = scenario.engine.batches[1].comments
    assert again.comment_id == root and again.earlier[0].outcome == "fixed"
    assert len(scenario.fake.replies_to(root)) == 2
    assert scenario.fake.threads.resolved_by_mutation == [root, root]
    detail = (await scenario.api("/api/pull-requests/1"))["pull_request"]
    assert detail["batches"][-1]["trigger"] == "reopened"


async def test_thread_events_from_biagent_or_on_threads_it_never_answered_work_nothing(
    scenario: Scenario,
) -> None:
    (root,) = await comments_and_review(scenario, ["Rename this variable."])
    await scenario.send(
        "pull_request_review_thread", thread_event(scenario, "unresolved", root, sender=BOT)
    )
    untouched = scenario.review_comment("A thought.", review_id=904)  # never sent: not watched
    await scenario.send(
        "pull_request_review_thread",
        thread_event(scenario, "unresolved", untouched["comment"]["id"], sender=REVIEWER),
    )
    await scenario.advance(400)
    assert len(scenario.engine.batches) == 1
    await scenario.send(
        "pull_request_review_thread", thread_event(scenario, "resolved", root, sender=REVIEWER)
    )
    detail = (await scenario.api("/api/pull-requests/1"))["pull_request"]
    assert [c["resolved"] for c in detail["comments"] if c["id"] == root] == [True]


async def test_a_reopened_thread_with_a_reply_is_answered_once_whichever_comes_first(
    scenario: Scenario,
) -> None:
    first, second = await comments_and_review(scenario, ["Rename this.", "Add a test."])
    # Reopened, then a reply: the reply takes the reopened comment's place.
    scenario.fake.threads.resolved.discard(first)
    await scenario.send(
        "pull_request_review_thread", thread_event(scenario, "unresolved", first, sender=REVIEWER)
    )
    reply = scenario.review_comment("Still wrong: use `total`.", in_reply_to=first)
    await scenario.send("pull_request_review_comment", reply)
    # A reply, then reopened: the reopening adds nothing.
    other = scenario.review_comment("The test misses the empty case.", in_reply_to=second)
    await scenario.send("pull_request_review_comment", other)
    scenario.fake.threads.resolved.discard(second)
    await scenario.send(
        "pull_request_review_thread", thread_event(scenario, "unresolved", second, sender=REVIEWER)
    )
    await scenario.advance(31)
    assert len(scenario.engine.batches) == 2
    worked = [c.comment_id for c in scenario.engine.batches[1].comments]
    assert worked == [reply["comment"]["id"], other["comment"]["id"]]
    for root in (first, second):
        answers = [a for a in scenario.fake.replies_to(root) if a["user"]["login"] == BOT]
        assert len(answers) == 2  # one per batch


async def test_a_thread_reopened_while_its_follow_up_is_worked_answers_it_once(
    scenario: Scenario,
) -> None:
    """A reply in a resolved thread, its batch starts, then the reviewer unresolves the thread:
    the reply is being worked already, so the reopening adds no second batch for it."""
    (root,) = await comments_and_review(scenario, ["Rename this variable."])
    follow_up = scenario.review_comment("No, call it `total`.", in_reply_to=root)
    await scenario.send("pull_request_review_comment", follow_up)
    scenario.engine.hold()
    scenario.engine.started.clear()
    await scenario.clock.advance(31)
    assert scenario.client is not None
    draining = asyncio.create_task(scenario.client.app[REVIEW_SCHEDULER].drain())
    await asyncio.wait_for(scenario.engine.started.wait(), 5)
    scenario.fake.threads.resolved.discard(root)  # "Unresolve", while the reply is worked
    await scenario.send(
        "pull_request_review_thread", thread_event(scenario, "unresolved", root, sender=REVIEWER)
    )
    scenario.engine.release()
    await draining
    await scenario.advance(400)
    assert len(scenario.engine.batches) == 2
    (worked,) = scenario.engine.batches[1].comments
    assert worked.comment_id == follow_up["comment"]["id"]
    answers = [a for a in scenario.fake.replies_to(root) if a["user"]["login"] == BOT]
    assert len(answers) == 2  # the first comment's and the reply's: once each
    detail = (await scenario.api("/api/pull-requests/1"))["pull_request"]
    assert [b["trigger"] for b in detail["batches"]] == ["comments", "comments"]


async def test_a_thread_with_a_newer_comment_waiting_is_not_resolved_until_that_is_answered(
    scenario: Scenario,
) -> None:
    """The first comment is fixed while the reviewer asks more in its thread: the thread stays
    open for the next batch's answer, and is resolved once that one is fixed too."""
    root_payload = scenario.review_comment("Rename this variable.")
    root = root_payload["comment"]["id"]
    await scenario.send("pull_request_review_comment", root_payload)
    scenario.engine.hold()
    await scenario.clock.advance(31)
    assert scenario.client is not None
    draining = asyncio.create_task(scenario.client.app[REVIEW_SCHEDULER].drain())
    await asyncio.wait_for(scenario.engine.started.wait(), 5)
    more = scenario.review_comment("And the one below too.", in_reply_to=root)
    await scenario.send("pull_request_review_comment", more)  # while the first is worked
    scenario.engine.release()
    await draining
    await scenario.settle()
    threads = scenario.fake.threads
    assert threads.resolved_by_mutation == [] and root not in threads.resolved
    answers = [a for a in scenario.fake.replies_to(root) if a["user"]["login"] == BOT]
    assert len(answers) == 1  # the first comment was answered
    await scenario.advance(31)
    assert [c.comment_id for c in scenario.engine.batches[1].comments] == [more["comment"]["id"]]
    assert threads.resolved_by_mutation == [root]


MAY_PASS = {
    "a proxy's 502 page": {"status": 502, "html": "<html><body>502 Bad Gateway</body></html>"},
    "RATE_LIMITED": {
        "status": 200,
        "body": {"data": None, "errors": [{"type": "RATE_LIMITED", "message": "API rate limit"}]},
    },
    "something went wrong": {
        "status": 200,
        "body": {"errors": [{"message": "Something went wrong while executing your query."}]},
    },
    "a secondary rate limit": {"status": 403},
}


@pytest.mark.parametrize("failure", MAY_PASS.values(), ids=MAY_PASS.keys())
async def test_a_graphql_failure_that_may_pass_is_tried_again_and_resolves_once(
    scenario: Scenario, failure: dict[str, Any]
) -> None:
    scenario.fake.script_failure("POST", "/graphql", **failure)
    payload = scenario.review_comment("Rename this.")
    await scenario.send("pull_request_review_comment", payload)
    await scenario.work_with_retries(60)
    await scenario.settle()
    assert scenario.fake.threads.resolved_by_mutation == [payload["comment"]["id"]]
    rows = await scenario.db.fetchall(
        "SELECT status FROM review_actions WHERE kind = ?", ("resolve_thread",)
    )
    assert [tuple(row) for row in rows] == [("done",)]
    assert len(scenario.replies()) == 1


async def test_a_thread_graphql_says_is_not_found_is_given_up_and_the_batch_goes_on(
    scenario: Scenario,
) -> None:
    errors = [{"type": "NOT_FOUND", "message": "Could not resolve to a PullRequest."}]
    scenario.fake.script_failure(
        "POST", "/graphql", status=200, body={"data": None, "errors": errors}
    )
    await comments_and_review(scenario, ["Rename this."])
    assert scenario.fake.threads.resolved_by_mutation == []
    rows = await scenario.db.fetchall(
        "SELECT status, detail FROM review_actions WHERE kind = ?", ("resolve_thread",)
    )
    ((status, detail),) = rows
    assert status == "failed" and "Could not resolve" in detail
    assert len(graphql_calls(scenario)) == 1  # not asked again
    assert scenario.fake.threads.review_requests == [(REPO, NUMBER, [REVIEWER])]


async def test_one_reviewer_github_refuses_does_not_keep_the_others_from_being_rerequested(
    scenario: Scenario,
) -> None:
    """GitHub 422s the whole POST when one login is no collaborator (carol left the repository
    after commenting): each is asked for alone, and REVIEWER is still re-requested, once."""
    scenario.fake.set_permission(REPO, "carol", "write")
    by_carol = scenario.review_comment("Spacing.", author="carol", review_id=905)
    await scenario.send("pull_request_review_comment", by_carol)
    del scenario.fake.permissions[(REPO, "carol")]
    await comments_and_review(scenario, ["Rename this."])
    assert scenario.fake.threads.requested_of(REPO, NUMBER) == [REVIEWER]
    posts = scenario.fake.calls_to("POST", f"/repos/{REPO}/pulls/{NUMBER}/requested_reviewers")
    assert [call.body["reviewers"] for call in posts] == [
        sorted(["carol", REVIEWER], key=str.lower),
        ["carol"],
        [REVIEWER],
    ]
    rows = await scenario.db.fetchall(
        "SELECT target, status FROM review_actions WHERE kind = ? ORDER BY id",
        ("rerequest_review",),
    )
    assert [tuple(row) for row in rows] == [
        (f"carol,{REVIEWER}", "done"),
        ("carol", "failed"),
        (REVIEWER, "done"),
    ]
    await scenario.advance(400)  # nothing asked again
    assert (
        len(scenario.fake.calls_to("POST", f"/repos/{REPO}/pulls/{NUMBER}/requested_reviewers"))
        == 3
    )
