"""The decisions after a pushed iteration (pure): which threads are resolved, who is asked to
review again, which comment a reopened thread brings back, what a follow-up's agent is told."""

from __future__ import annotations

import dataclasses

from bot.github.manners import graphql_url
from bot.reviews.after_push import reviewers_to_rerequest, threads_to_resolve
from bot.reviews.agent_texts import task_text
from bot.reviews.engine import BatchComment, EarlierAnswer, ReviewBatch, ThreadMessage
from bot.reviews.gathering import reopened_thread_comment
from bot.reviews.rules import RepoRules, parse_rules
from storage.review_batches import BatchItem
from storage.review_comments import Comment


def comment(
    comment_id: int,
    *,
    author: str = "alice",
    reply_to: int | None = None,
    kind: str = "review_comment",
    own: bool = False,
    author_type: str = "User",
    deleted: bool = False,
    at: str = "2026-12-01T10:00:00Z",
) -> Comment:
    return Comment(
        comment_id, kind, 1, 900, reply_to, "a.py", 3, None, "RIGHT", "@@", "c0ffee", "body",
        author, author_type, own, None, 1, deleted, False, at, at,
    )  # fmt: skip


def item(comment_id: int, outcome: str, kind: str = "review_comment") -> BatchItem:
    return BatchItem(5, kind, comment_id, 1, "body", outcome, "", None)


def test_a_thread_is_resolved_only_when_every_comment_of_it_was_fixed_and_answered() -> None:
    diff = {c.id: c for c in (comment(1), comment(2, reply_to=1), comment(3), comment(4))}
    items = [item(1, "fixed"), item(2, "fixed"), item(3, "fixed"), item(4, "fixed")]
    posted = {("review_comment", i) for i in (1, 2, 3)}  # 4's reply was refused
    assert threads_to_resolve(items, diff, posted) == {1: {1, 2}, 3: {3}}
    mixed = [item(1, "fixed"), item(2, "declined"), item(3, "question")]
    assert threads_to_resolve(mixed, diff, posted) == {}
    assert threads_to_resolve([item(9, "fixed", "review_body")], diff, posted) == {}


def test_rerequested_are_those_fixed_for_never_approvers_bots_biagent_or_the_author() -> None:
    comments = {
        (c.kind, c.id): c
        for c in (
            comment(1, author="alice"),
            comment(2, author="Alice"),  # the same person twice
            comment(3, author="bob"),  # approves now
            comment(4, author="renovate[bot]", author_type="Bot"),
            comment(5, author="biagent-test[bot]"),
            comment(6, author="carol"),  # the pull request's author
            comment(7, author="dave", kind="issue_comment"),  # never reviewed
            comment(8, author="erin", kind="issue_comment"),
            comment(9, author="frank"),  # declined: nothing changed for him
        )
    }
    items = [item(i, "fixed") for i in range(1, 7)] + [item(7, "fixed", "issue_comment")]
    items += [item(8, "fixed", "issue_comment"), item(9, "declined")]
    states = {"bob": "approved", "erin": "commented", "alice": "changes_requested"}
    never = ["Biagent-Test[bot]", "carol"]
    assert reviewers_to_rerequest(items, comments, states, never=never) == ["alice", "erin"]


def test_a_reopened_thread_brings_back_its_last_comment_by_a_person() -> None:
    thread = {
        1: comment(1, at="2026-12-01T10:00:00Z"),
        2: comment(2, reply_to=1, own=True, author="biagent-test[bot]", at="2026-12-01T10:05:00Z"),
        3: comment(3, reply_to=1, at="2026-12-01T10:09:00Z"),
        4: comment(4, reply_to=1, deleted=True, at="2026-12-01T10:10:00Z"),
        5: comment(5, at="2026-12-01T10:00:00Z"),  # another thread, never answered
    }
    assert reopened_thread_comment(thread, [1, 2, 3]) == 3
    assert reopened_thread_comment(thread, [5]) is None
    assert reopened_thread_comment(thread, [42]) is None


def test_the_graphql_endpoint_sits_beside_the_rest_base() -> None:
    assert graphql_url("https://api.github.com") == "https://api.github.com/graphql"
    assert graphql_url("https://ghe.example.com/api/v3/") == "https://ghe.example.com/api/graphql"
    assert graphql_url("http://127.0.0.1:8000") == "http://127.0.0.1:8000/graphql"


def test_both_options_default_on_and_a_bad_value_keeps_the_default() -> None:
    base = RepoRules()
    assert (base.resolve_threads, base.rerequest_review) == (True, True)
    off = parse_rules("reviews:\n  resolve_threads: false\n  rerequest_review: false\n", base)
    assert (off.resolve_threads, off.rerequest_review) == (False, False)
    bad = parse_rules("reviews:\n  resolve_threads: sometimes\n", base)
    assert bad.resolve_threads is True
    assert any("reviews.resolve_threads" in problem for problem in bad.problems)


def test_a_follow_ups_task_says_what_was_answered_before_and_what_changed_since() -> None:
    sha = "0123456789abcdef0123456789abcdef01234567"
    earlier_reply = (
        "> Rename x.\n\n**Fixed** in 0123456.\n\n<!-- biagent:reply:3:review_comment:1 -->"
    )
    thread = (
        ThreadMessage(1, "alice", "Rename x.", "2026-12-01T10:00:00Z"),
        ThreadMessage(2, "biagent-test[bot]", earlier_reply, "2026-12-01T10:05:00Z", True),
        ThreadMessage(3, "alice", "No, call it total.", "2026-12-01T10:09:00Z"),
    )
    follow_up = BatchComment(
        3, "review_comment", "alice", "No, call it total.", "a.py", 3, None, "RIGHT", "@@", 1,
        thread, earlier=(EarlierAnswer(1, 3, "fixed", "Renamed to y.", sha),),
    )  # fmt: skip
    batch = ReviewBatch(8, 4, "o/r", "file:///r", 2, "T", "f", "b" * 40, "main", 1, (follow_up,))
    history = {sha: "0123456 Address review comments\n a.py | 2 +-\nCommits since:\n(none)"}
    text = task_text(batch, "make test", "b" * 40, history=history)
    assert "You answered in this thread before:" in text
    assert f"- iteration 3, comment 1: fixed in commit {sha[:12]}. Renamed to y." in text
    assert "a.py | 2 +-" in text and "Commits since:" in text
    assert "This comment follows up on that answer" in text
    assert "<!-- biagent:" not in text
    reopened = dataclasses.replace(follow_up, comment_id=1, body="Rename x.", thread=thread[:2])
    text = task_text(dataclasses.replace(batch, comments=(reopened,)), None, "b" * 40)
    assert "its thread was reopened" in text
