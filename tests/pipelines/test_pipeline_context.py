"""What the review agent reads about the pipeline that opened a pull request (pure)."""

from __future__ import annotations

from bot.pipelines.context import PLAN_CAP, PipelineContext, context_text


def test_a_long_plan_is_cut_at_its_cap_and_says_so() -> None:
    plan = "step\n" * PLAN_CAP
    text = context_text(PipelineContext("ACME-1", "Greet", "", plan))
    assert text.endswith("[... cut]")
    assert len(text) < PLAN_CAP + 1000


def test_a_ticket_missing_from_the_mirror_and_a_cycle_without_a_plan_are_said_plainly() -> None:
    text = context_text(PipelineContext("ACME-2", None, "", None))
    assert "pipeline for ACME-2" in text
    assert "not in biagent's JIRA mirror" in text
    assert "Approved plan" not in text
