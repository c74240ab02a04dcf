"""What an agent run means for a pipeline step, and the texts a pipeline writes: pure parts."""

from __future__ import annotations

from bot.pipelines import outcomes
from bot.pipelines.outcomes import (
    Verdict,
    judge,
    pull_request_text,
    reported_risks,
)
from bot.pipelines.pull_request import PullRequestFacts, pull_request_body
from bot.pipelines.states import FailureKind, Severity
from bot.pipelines.workspace import branch_owner
from storage.risks import Risk


def test_a_completed_plan_waits_for_approval_and_other_steps_complete() -> None:
    assert judge("completed", "plan_approval", reason=None, error=None).verdict == (
        Verdict.NEEDS_APPROVAL
    )
    assert judge("completed", "none", reason=None, error=None).verdict == Verdict.COMPLETED


def test_a_question_makes_the_step_wait_for_input() -> None:
    verdict = judge("paused_for_clarification", "none", reason="asked", error=None)
    assert verdict.verdict == Verdict.NEEDS_INPUT


def test_a_budget_stop_fails_with_kind_budget_but_a_turn_limit_is_the_agents() -> None:
    budget = judge("budget_stopped", "none", reason="step budget reached: $1", error=None)
    turns = judge("budget_stopped", "none", reason="turn limit reached (15 turns)", error=None)
    assert (budget.verdict, budget.kind) == (Verdict.FAILED, FailureKind.BUDGET)
    assert turns.kind == FailureKind.AGENT


def test_a_loop_stop_and_a_failure_name_their_kinds() -> None:
    assert judge("loop_stopped", "none", reason=None, error=None).kind == FailureKind.LOOP
    failed = judge("failed", "none", reason=None, error="APIError: boom")
    assert (failed.kind, failed.message) == (FailureKind.AGENT, "APIError: boom")


def test_risks_are_read_from_the_report_and_bad_entries_skipped() -> None:
    output = {
        "risks": [
            {"title": "drops a column", "severity": "HIGH", "detail": "data loss"},
            {"title": "no severity"},
            {"severity": "low"},
            {"title": "slow query", "severity": "medium"},
        ]
    }
    found = reported_risks(output)
    assert [(risk.title, risk.severity) for risk in found] == [
        ("drops a column", Severity.HIGH),
        ("slow query", Severity.MEDIUM),
    ]
    assert reported_risks("not a report") == []


def test_only_a_report_that_says_passed_counts_as_passing() -> None:
    assert outcomes.tests_passed({"passed": True, "summary": "ok"})
    assert not outcomes.tests_passed({"passed": "yes"})
    assert not outcomes.tests_passed(None)


def test_the_pull_request_title_falls_back_to_the_ticket() -> None:
    assert pull_request_text({"title": " Add refunds ", "body": "b"}, "A-1", "s") == (
        "Add refunds",
        "b",
    )
    assert pull_request_text(None, "A-1", "Refunds") == ("A-1: Refunds", "")


def test_the_branch_is_the_ticket_and_a_slug_of_its_summary() -> None:
    assert branch_owner("ACME-12", "Add refunds to Checkout!") == "ACME-12-add-refunds-to-checkout"
    assert branch_owner("ACME-12", "???") == "ACME-12"
    assert len(branch_owner("ACME-12", "x" * 200)) <= len("ACME-12-") + 40


def test_the_pull_request_body_carries_ticket_plan_risks_tests_and_cost() -> None:
    risk = Risk(1, 1, 3, "drops a column", "high", "", "ann", "2026-12-03", "backed up", "")
    facts = PullRequestFacts(
        ticket_key="ACME-12",
        ticket_url="https://jira.example/browse/ACME-12",
        plan="1. migrate",
        risks=(risk,),
        test_results="12 passed",
        tests_passed=False,
        cost_usd=1.234,
    )
    body = pull_request_body("What and why.", facts)
    assert body.startswith("What and why.")
    assert "Ticket: [ACME-12](https://jira.example/browse/ACME-12)" in body
    assert "1. migrate" in body
    assert "**high** drops a column: acknowledged by ann (backed up)" in body
    assert "Tests: FAIL (this pull request is a draft)" in body
    assert "Agent cost: $1.23" in body
