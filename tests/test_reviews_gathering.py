"""What a submitted review gathers, the PR's review state and the check's conclusion (pure)."""

from __future__ import annotations

from bot.reviews.gathering import SubmittedComment, overall_review_state, review_gathering
from bot.reviews.intake import pr_number
from bot.reviews.responding import check_conclusion
from bot.reviews.states import BatchStatus, Conclusion, OverallReviewState, ReviewState

PERSON = SubmittedComment(1, answerable=True)
WORTH = SubmittedComment(2, answerable=True, worth_working=True)
RESOLVED = SubmittedComment(3, answerable=False, worth_working=True)


def test_changes_requested_gathers_every_answerable_comment_and_the_body() -> None:
    gathering = review_gathering(
        ReviewState.CHANGES_REQUESTED,
        review_id=900,
        body="Please fix these.",
        mentioned=False,
        comments=[PERSON, WORTH, RESOLVED],
    )
    assert gathering.items == (
        ("review_comment", 1),
        ("review_comment", 2),
        ("review_body", 900),
    )
    assert gathering.closes_batch


def test_a_commented_review_gathers_only_what_is_worth_working_on_its_own() -> None:
    gathering = review_gathering(
        "commented", review_id=900, body="Looks fine", mentioned=False, comments=[PERSON, WORTH]
    )
    assert gathering.items == (("review_comment", 2),)


def test_a_review_body_that_mentions_biagent_is_gathered() -> None:
    gathering = review_gathering(
        "commented", review_id=900, body="@biagent-test tidy up", mentioned=True, comments=[]
    )
    assert gathering.items == (("review_body", 900),)


def test_a_single_comment_review_leaves_the_batch_gathering() -> None:
    single = review_gathering("commented", review_id=1, body="", mentioned=False, comments=[WORTH])
    assert single.items == (("review_comment", 2),)
    assert not single.closes_batch
    two = review_gathering(
        "commented", review_id=1, body="", mentioned=False, comments=[WORTH, PERSON]
    )
    assert two.closes_batch


def test_a_resolved_or_deleted_comment_is_never_gathered() -> None:
    gathering = review_gathering(
        "changes_requested", review_id=1, body="", mentioned=False, comments=[RESOLVED]
    )
    assert gathering.items == ()


def test_changes_requested_outweighs_approvals_and_nothing_is_waiting() -> None:
    assert overall_review_state(["approved", "changes_requested"]) == "changes_requested"
    assert overall_review_state(["commented", "approved"]) is OverallReviewState.APPROVED
    assert overall_review_state(["commented"]) is OverallReviewState.WAITING
    assert overall_review_state([]) is OverallReviewState.WAITING


def test_the_check_succeeds_only_when_the_run_completed_and_every_comment_was_answered() -> None:
    assert check_conclusion("completed", {"fixed": 2}) is Conclusion.SUCCESS
    assert check_conclusion("completed", {"fixed": 1, "not_addressed": 1}) is Conclusion.NEUTRAL
    assert check_conclusion("budget_stopped", {"fixed": 2}) is Conclusion.NEUTRAL


def test_a_batch_being_gathered_or_worked_is_in_progress() -> None:
    assert {status for status in BatchStatus if status.in_progress} == {
        BatchStatus.GATHERING,
        BatchStatus.RUNNING,
        BatchStatus.RESPONDING,
    }
    assert BatchStatus("done") is BatchStatus.DONE  # the database's text values


def test_the_pull_request_of_a_payload_is_its_own_or_an_issue_that_is_one() -> None:
    assert pr_number({"pull_request": {"number": 7}}) == 7
    assert pr_number({"issue": {"number": 8, "pull_request": {}}}) == 8
    assert pr_number({"issue": {"number": 9}}) is None
    assert pr_number({"check_run": {"id": 1}}) is None
