"""Small pure parts of review response: command parsing, the outcome check, repository rules."""

from __future__ import annotations

from bot.reviews.commands import mentions, parse_commands
from bot.reviews.engine import (
    BatchComment,
    CommentOutcome,
    EngineResult,
    EngineStatus,
    OutcomeKind,
    ReviewBatch,
)
from bot.reviews.outcomes import check_outcomes
from bot.reviews.rules import RepoRules, parse_rules


def test_commands_are_read_at_line_starts_outside_code_and_quotes() -> None:
    body = (
        "Thanks!\n/biagent pause now\n  /biagent STATUS\n> /biagent ignore\n```\n/biagent cost\n```"
    )
    assert [(c.name, c.arguments) for c in parse_commands(body)] == [
        ("pause", "now"),
        ("status", ""),
    ]
    assert parse_commands("see /biagent help") == []
    assert [c.name for c in parse_commands("/biagent")] == ["help"]
    assert parse_commands("/biagent dance")[0].known is False


def test_mentions_need_the_app_handle() -> None:
    assert mentions("hey @biagent-test, fix it", "biagent-test")
    assert mentions("@biagent-test[bot] please", "biagent-test")
    assert not mentions("@biagent-tester", "biagent-test")
    assert not mentions("mail me: me@biagent-test.dev", "biagent-test")
    assert not mentions("`@biagent-test`", "biagent-test")
    assert not mentions("> @biagent-test", "biagent-test")


def batch_of(*ids: int) -> ReviewBatch:
    comments = tuple(
        BatchComment(i, "review_comment", "rev", "body", "a.py", 1, None, "RIGHT", "@@", i, ())
        for i in ids
    )
    return ReviewBatch(1, 1, "o/r", "file:///x", 2, "t", "b", "s" * 40, "main", 1, comments)


def test_every_comment_gets_exactly_one_outcome() -> None:
    result = EngineResult(
        EngineStatus.COMPLETED,
        (
            CommentOutcome(1, OutcomeKind.FIXED),
            CommentOutcome(2, OutcomeKind.DECLINED, reason="out of scope"),
            CommentOutcome(2, OutcomeKind.DECLINED, reason="out of scope"),  # a repeat
            CommentOutcome(3, OutcomeKind.FIXED),
            CommentOutcome(3, OutcomeKind.QUESTION, question="which?"),
            CommentOutcome(5, OutcomeKind.DECLINED, reason=""),
            CommentOutcome(99, OutcomeKind.FIXED),
        ),
        commit_sha="c" * 40,
    )
    checked, strays = check_outcomes(batch_of(1, 2, 3, 4, 5), result)
    assert [(o.comment_id, o.outcome) for o in checked] == [
        (1, "fixed"),
        (2, "declined"),
        (3, "not_addressed"),
        (4, "not_addressed"),
        (5, "not_addressed"),
    ]
    assert checked[0].commit_sha == "c" * 40
    assert "conflicting" in checked[2].detail
    assert "without reporting" in checked[3].detail
    assert "without giving a reason" in checked[4].detail
    assert strays == [99]


def test_fixed_without_a_pushed_commit_is_not_addressed() -> None:
    result = EngineResult(
        EngineStatus.FAILED,
        (CommentOutcome(1, OutcomeKind.FIXED, commit_sha="d" * 40),),
        error="push rejected",
    )
    (checked,), _ = check_outcomes(batch_of(1), result)
    assert checked.outcome == "not_addressed" and "no commit was pushed" in checked.detail


def test_rules_override_defaults_and_report_problems() -> None:
    rules = parse_rules(
        "test: make check\nreviews:\n  debounce_seconds: 10\n  caps:\n    usd_per_pr: five\n"
        "  commands_from: [Alice]\n",
        RepoRules(),
    )
    assert (rules.debounce_s, rules.test_command, rules.commands_from) == (
        10.0,
        "make check",
        frozenset({"alice"}),
    )
    assert rules.max_usd_per_pr == 20.0 and rules.problems
    broken = parse_rules("reviews: [", RepoRules(max_runs_per_hour=3))
    assert broken.max_runs_per_hour == 3 and broken.problems


def test_outcomes_are_keyed_by_kind_and_id() -> None:
    diff = BatchComment(7, "review_comment", "rev", "body", "a.py", 1, None, "RIGHT", "@@", 7, ())
    review = BatchComment(7, "review_body", "rev", "please", None, None, None, None, None, None, ())
    batch = ReviewBatch(1, 1, "o/r", "file:///x", 2, "t", "b", "s" * 40, "main", 1, (diff, review))
    declined = CommentOutcome(7, OutcomeKind.DECLINED, reason="no", comment_kind="review_body")
    checked, _ = check_outcomes(batch, EngineResult(EngineStatus.COMPLETED, (declined,)))
    assert [(o.comment_kind, o.outcome) for o in checked] == [
        ("review_comment", "not_addressed"),
        ("review_body", "declined"),
    ]
    unplaced = CommentOutcome(7, OutcomeKind.DECLINED, reason="no")  # which of the two?
    checked, _ = check_outcomes(batch, EngineResult(EngineStatus.COMPLETED, (unplaced,)))
    assert [o.outcome for o in checked] == ["not_addressed", "not_addressed"]
    assert "more than one comment" in checked[0].detail
