"""Pipeline rows on real SQLite: steps copied from the cycle type, states, feedback, risks."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from storage import cycle_types, pipelines, risks, step_outputs
from storage.cycle_types import PhaseChoice
from storage.database import Database

pytestmark = pytest.mark.both_databases

NOW = datetime(2026, 12, 3, 10, 0, tzinfo=UTC)


async def a_backend_pipeline(db: Database) -> tuple[pipelines.Pipeline, list[pipelines.Step]]:
    pipeline = await pipelines.create_pipeline(
        db,
        ticket_key="ACME-12",
        repositories=["octo/repo"],
        trigger="api",
        created_by=None,
        now=NOW,
    )
    backend = await cycle_types.get_cycle_type(db, "backend")
    assert backend is not None
    steps = await pipelines.set_cycle_type(
        db, pipeline.id, backend, reason="rule: label backend", max_cost_usd=None, now=NOW
    )
    return pipeline, steps


async def test_a_new_pipeline_is_created_without_steps(db: Database) -> None:
    pipeline = await pipelines.create_pipeline(
        db, ticket_key="ACME-1", repositories=["o/r"], trigger="api", created_by="ann", now=NOW
    )
    assert (pipeline.status, pipeline.cycle_type, pipeline.repositories) == (
        "created",
        None,
        ("o/r",),
    )
    assert await pipelines.list_steps(db, pipeline.id) == []


async def test_setting_the_cycle_type_copies_its_phases_into_steps(db: Database) -> None:
    pipeline, steps = await a_backend_pipeline(db)
    assert [step.phase for step in steps] == [
        "triage",
        "plan",
        "risk",
        "implement",
        "test",
        "self_review",
        "pull_request",
    ]
    assert [step.agent for step in steps][:3] == ["triage", "planner", "risk"]
    assert steps[1].gate == "plan_approval"
    assert all(step.status == "pending" and step.attempt == 1 for step in steps)
    stored = await pipelines.get_pipeline(db, pipeline.id)
    assert stored is not None
    assert (stored.cycle_type, stored.cycle_reason) == ("backend", "rule: label backend")


async def test_editing_the_cycle_type_later_leaves_existing_steps_alone(db: Database) -> None:
    pipeline, steps = await a_backend_pipeline(db)
    await cycle_types.save_cycle_type(
        db,
        "backend",
        description="",
        max_cost_usd=None,
        step_max_cost_usd=None,
        phases=[PhaseChoice("triage")],
        now=NOW,
    )
    edited = await cycle_types.get_cycle_type(db, "backend")
    assert edited is not None and [p.phase.name for p in edited.phases] == ["triage"]
    kept = await pipelines.list_steps(db, pipeline.id)
    assert [step.phase for step in kept] == [step.phase for step in steps]
    assert len(kept) == 7


async def test_running_stamps_the_start_once_and_ending_stamps_the_finish(db: Database) -> None:
    pipeline, steps = await a_backend_pipeline(db)
    later = NOW + timedelta(minutes=5)
    await db.write(*pipelines.pipeline_status(pipeline.id, "running", now=NOW))
    await db.write(*pipelines.pipeline_status(pipeline.id, "paused", now=later))
    await db.write(*pipelines.pipeline_status(pipeline.id, "running", now=later))
    await db.write(*pipelines.step_status(steps[0].id, "running", now=NOW, session_key="k"))
    await db.write(*pipelines.step_status(steps[0].id, "completed", now=later))
    stored = await pipelines.get_pipeline(db, pipeline.id)
    step = await pipelines.get_step(db, steps[0].id)
    assert stored is not None and step is not None
    assert (stored.status, stored.started_at, stored.finished_at) == (
        "running",
        "2026-12-03T10:00:00.000000Z",
        None,
    )
    assert (step.status, step.session_key, step.finished_at) == (
        "completed",
        "k",
        "2026-12-03T10:05:00.000000Z",
    )


async def test_a_failure_records_the_phase_kind_and_detail(db: Database) -> None:
    pipeline, _ = await a_backend_pipeline(db)
    await db.write(*pipelines.pipeline_status(pipeline.id, "running", now=NOW))
    await db.write(
        *pipelines.pipeline_failure(
            pipeline.id,
            kind="budget",
            message="step cap of $1.00 reached",
            phase="implement",
            detail={"last_tool_call": {"tool": "bash"}},
            now=NOW,
        )
    )
    failed = await pipelines.get_pipeline(db, pipeline.id)
    assert failed is not None
    assert (failed.status, failed.error_kind, failed.error_phase) == (
        "failed",
        "budget",
        "implement",
    )
    assert failed.error_detail == {"last_tool_call": {"tool": "bash"}}
    # Only a running pipeline fails: a pause committed meanwhile is not overwritten.
    await db.write(*pipelines.pipeline_status(pipeline.id, "paused", now=NOW))
    again = pipelines.pipeline_failure(
        pipeline.id, kind="agent", message="late", phase=None, detail={}, now=NOW
    )
    assert (await db.write(*again)).rowcount == 0
    await db.write(*pipelines.clear_failure(pipeline.id))
    cleared = await pipelines.get_pipeline(db, pipeline.id)
    assert cleared is not None and cleared.error_kind is None


async def test_pipelines_are_listed_by_status_and_ticket(db: Database) -> None:
    first, _ = await a_backend_pipeline(db)
    second = await pipelines.create_pipeline(
        db, ticket_key="ACME-99", repositories=[], trigger="label", created_by=None, now=NOW
    )
    await db.write(*pipelines.pipeline_status(first.id, "running", now=NOW))
    running = await pipelines.list_pipelines(db, statuses=["running"])
    assert [found.id for found in running] == [first.id]
    by_ticket = await pipelines.list_pipelines(db, ticket_key="ACME-99")
    assert [found.id for found in by_ticket] == [second.id]
    assert [found.id for found in await pipelines.list_pipelines(db)] == [second.id, first.id]


async def test_costs_add_up_on_the_step_and_the_pipeline(db: Database) -> None:
    pipeline, steps = await a_backend_pipeline(db)
    await db.write_many(pipelines.add_cost(pipeline.id, steps[0].id, 0.25))
    await db.write_many(pipelines.add_cost(pipeline.id, steps[1].id, 0.5))
    stored = await pipelines.get_pipeline(db, pipeline.id)
    step = await pipelines.get_step(db, steps[1].id)
    assert stored is not None and step is not None
    assert (stored.cost_usd, step.cost_usd) == (0.75, 0.5)


async def test_feedback_keeps_the_old_output_and_marks_later_steps_stale(db: Database) -> None:
    pipeline, steps = await a_backend_pipeline(db)
    plan, risk = steps[1], steps[2]
    await db.write(*step_outputs.save_output(plan.id, 1, "plan v1", {"plan": "v1"}, now=NOW))
    await db.write(*pipelines.step_status(plan.id, "completed", now=NOW))
    await db.write(*pipelines.step_status(risk.id, "completed", now=NOW))
    await db.write_many(
        step_outputs.feedback_restart(
            pipeline_id=pipeline.id,
            step_id=plan.id,
            position=plan.position,
            attempt=plan.attempt,
            text="use the queue",
            given_by="ann",
            now=NOW,
        )
    )
    restarted = await pipelines.get_step(db, plan.id)
    stale = await pipelines.get_step(db, risk.id)
    assert restarted is not None and stale is not None
    assert (restarted.status, restarted.attempt) == ("pending", 2)
    assert stale.status == "stale"
    assert await step_outputs.outputs_of(db, pipeline.id) == {}
    history = await step_outputs.history_of(db, plan.id)
    assert [(old.attempt, old.text, old.output) for old in history] == [
        (1, "plan v1", {"plan": "v1"})
    ]
    feedback = await step_outputs.feedback_of(db, plan.id)
    assert [(given.attempt, given.text) for given in feedback] == [(2, "use the queue")]


async def test_a_risk_is_acknowledged_once(db: Database) -> None:
    pipeline, steps = await a_backend_pipeline(db)
    await db.write(
        *risks.add_risk(
            pipeline.id, steps[2].id, title="drops a column", severity="high", detail="", now=NOW
        )
    )
    (risk,) = await risks.risks_of(db, pipeline.id)
    assert risk.acknowledged_at is None
    first = await db.write(*risks.acknowledge(risk.id, by="ann", note="ok", now=NOW))
    second = await db.write(*risks.acknowledge(risk.id, by="bob", note=None, now=NOW))
    assert (first.rowcount, second.rowcount) == (1, 0)
    acknowledged = await risks.get_risk(db, risk.id)
    assert acknowledged is not None
    assert (acknowledged.acknowledged_by, acknowledged.note) == ("ann", "ok")


async def test_artifacts_are_kept_per_pipeline_in_order(db: Database) -> None:
    pipeline, steps = await a_backend_pipeline(db)
    await db.write(*step_outputs.add_artifact(steps[1].id, pipeline.id, 1, "plan", "do x", now=NOW))
    await db.write(
        *step_outputs.add_artifact(
            steps[6].id, pipeline.id, 1, "pr_link", "", url="https://x/pull/1", now=NOW
        )
    )
    kinds = [(found.kind, found.url) for found in await step_outputs.artifacts_of(db, pipeline.id)]
    assert kinds == [("plan", None), ("pr_link", "https://x/pull/1")]


async def test_a_pull_request_of_a_pipeline_is_found_from_either_side(db: Database) -> None:
    pipeline, _ = await a_backend_pipeline(db)
    url = "https://github.example/octo/repo/pull/7"
    recorded = pipelines.record_pull_request(pipeline.id, "octo/repo", 7, url, draft=True, now=NOW)
    await db.write(*recorded)
    await db.write(*recorded)  # a repeat after a crash changes nothing
    (pull,) = await pipelines.pull_requests_of(db, pipeline.id)
    assert (pull.number, pull.url, pull.draft, pull.state) == (7, url, True, "open")
    await db.write(*pipelines.pull_request_state("octo/repo", 7, "merged"))
    found = await pipelines.pipeline_of_pull_request(db, "octo/repo", 7)
    assert found is not None and (found.pipeline_id, found.state) == (pipeline.id, "merged")
    assert await pipelines.pipeline_of_pull_request(db, "octo/repo", 8) is None


async def test_a_triage_step_then_the_chosen_cycle_type_keeps_the_done_triage(db: Database) -> None:
    pipeline = await pipelines.create_pipeline(
        db, ticket_key="ACME-5", repositories=["o/r"], trigger="api", created_by=None, now=NOW
    )
    triage = await cycle_types.get_phase_definition(db, "triage")
    assert triage is not None
    await pipelines.add_triage_step(db, pipeline.id, triage, reason="triage decides", now=NOW)
    (only,) = await pipelines.list_steps(db, pipeline.id)
    assert (only.phase, only.position) == ("triage", 1)
    await db.write(*pipelines.step_status(only.id, "completed", now=NOW))
    spike = await cycle_types.get_cycle_type(db, "spike")
    assert spike is not None
    steps = await pipelines.set_cycle_type(
        db, pipeline.id, spike, reason="triage agent", max_cost_usd=None, now=NOW,
        keep_done_triage=True,
    )  # fmt: skip
    assert [(step.phase, step.status) for step in steps] == [
        ("triage", "completed"),
        ("research", "pending"),
        ("report", "pending"),
    ]
    assert steps[0].id == only.id
