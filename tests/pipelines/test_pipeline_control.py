"""People drive a pipeline: the gates hold until released, pause interrupts a step and resume
continues its conversation, feedback makes attempt 2, caps and the loop detector stop runs."""

from __future__ import annotations

import asyncio
import dataclasses
import time

from tests.fakes import anthropic as scripted
from tests.pipelines.world import PipelineWorld, done, report, step_of

HIGH_RISK = report({"risks": [{"title": "Greeting change", "severity": "high", "detail": "UX"}]})
EDIT = scripted.tool_use(
    "edit_file", {"path": "greet.py", "old_text": '"Hi "', "new_text": '"Hello "'}
)


async def test_the_gates_hold_whatever_path_leads_to_the_next_phase(world: PipelineWorld) -> None:
    await world.start()
    key = await world.ticket(labels=("backend",))
    world.model.script("risk", HIGH_RISK, done())
    pipeline_id = (await world.create(key))["id"]
    held = await world.settle(pipeline_id)
    plan, risk_step = step_of(held, "plan"), step_of(held, "risk")
    assert held["status"] == "waiting_for_approval"

    wrong = await world.api(
        "POST", f"/api/pipelines/{pipeline_id}/steps/{risk_step['id']}/approve", status=409
    )
    assert wrong["state"] == "pending"
    # A pause and a resume do not step past the gate: it holds again at once.
    await world.api("POST", f"/api/pipelines/{pipeline_id}/pause")
    again = await world.act(pipeline_id, "resume")
    assert again["status"] == "waiting_for_approval"
    assert step_of(again, "risk")["status"] == "pending"
    assert "planner" in {agent for agent, _ in world.model.asked}
    assert [agent for agent, _ in world.model.asked].count("risk") == 0

    at_risk = await world.act(pipeline_id, f"steps/{plan['id']}/approve", {"by": "mia"})
    twice = await world.api(
        "POST", f"/api/pipelines/{pipeline_id}/steps/{plan['id']}/approve", status=409
    )
    assert twice["state"] == "completed"
    assert at_risk["status"] == "waiting_for_approval"
    # Restarting a later step does not run it past the unacknowledged high risk either.
    implement = step_of(at_risk, "implement")
    await world.api(
        "POST", f"/api/pipelines/{pipeline_id}/steps/{implement['id']}/restart", status=409
    )
    assert [agent for agent, _ in world.model.asked].count("implementer") == 0
    [risk] = at_risk["risks"]
    released = await world.act(pipeline_id, f"risks/{risk['id']}/acknowledge", {"note": "ok"})
    assert released["risks"][0]["acknowledged_by"] == "api"
    assert released["risks"][0]["note"] == "ok"
    assert released["status"] == "waiting_for_review"
    await world.api(
        "POST", f"/api/pipelines/{pipeline_id}/risks/{risk['id']}/acknowledge", status=409
    )


async def test_pause_interrupts_a_step_at_once_and_resume_continues_its_conversation(
    world: PipelineWorld,
) -> None:
    await world.start()
    key = await world.ticket()
    slow = dataclasses.replace(report({"summary": "greet() says Hello."}), delay_s=60.0)
    world.model.script("implementer", EDIT, slow)
    pipeline_id = (await world.create(key, cycle_type="oncall_bug"))["id"]
    while len(world.model.requests_of("implementer")) < 2:  # the slow turn is asked
        await world.anthropic.wait_for_requests(len(world.anthropic.requests) + 1)
    before = time.monotonic()
    paused = (await world.api("POST", f"/api/pipelines/{pipeline_id}/pause"))["pipeline"]
    assert time.monotonic() - before < 1.0
    assert paused["status"] == "paused"
    reproduce = step_of(paused, "reproduce")
    assert reproduce["status"] == "interrupted"
    kinds = [e["type"] for e in await world.events(pipeline_id)]
    assert kinds.index("pipeline_paused") < kinds.index("step_interrupted")

    cut = world.model.requests_of("implementer")[1]
    resumed = await world.act(pipeline_id, "resume")
    assert resumed["status"] == "waiting_for_review"
    after = world.model.requests_of("implementer")[2]
    assert after.messages == cut.messages  # the same conversation, no turn repeated
    assert world.branch_file(resumed["branch"], "greet.py").count('"Hello "') == 1
    assert step_of(resumed, "reproduce")["attempt"] == 1


async def test_feedback_makes_attempt_two_with_the_revised_note_and_keeps_the_history(
    world: PipelineWorld,
) -> None:
    await world.start()
    key = await world.ticket(labels=("backend",))
    pipeline_id = (await world.create(key))["id"]
    held = await world.settle(pipeline_id)
    plan = step_of(held, "plan")
    world.model.script("planner", report({"plan": "1. Use a GREETING constant."}), done())
    revised = await world.act(
        pipeline_id, f"steps/{plan['id']}/feedback", {"text": "Use a constant", "by": "mia"}
    )
    plan = step_of(revised, "plan")
    assert plan["attempt"] == 2 and plan["status"] == "waiting_for_approval"
    assert plan["output"].startswith("Revised based on your feedback")
    assert "GREETING constant" in plan["output"]
    assert [old["attempt"] for old in plan["history"]] == [1]
    assert "Change greet() to say Hello" in plan["history"][0]["output"]
    assert plan["feedback"][0]["text"] == "Use a constant"
    asked = world.model.requests_of("planner")[-2]
    assert "Use a constant" in str(asked.messages[0]["content"])
    kinds = [e["type"] for e in await world.events(pipeline_id)]
    assert "step_restarted" in kinds

    # Feedback on the plan after the risk step ran marks the risk step stale; it runs again.
    world.model.script("risk", HIGH_RISK, done())
    approved = await world.act(pipeline_id, f"steps/{plan['id']}/approve")
    assert step_of(approved, "risk")["status"] == "completed"
    world.model.script("planner", report({"plan": "1. Use GREETING."}), done())
    stale = await world.act(pipeline_id, f"steps/{plan['id']}/feedback", {"text": "Shorter"})
    assert step_of(stale, "plan")["attempt"] == 3
    assert step_of(stale, "risk")["status"] == "stale"
    assert stale["risks"][0]["acknowledged_at"] is None
    finished = await world.drive(pipeline_id)
    assert finished["status"] == "waiting_for_review"
    assert [agent for agent, _ in world.model.asked].count("risk") == 4, [
        (s["phase"], s["status"], s["attempt"]) for s in finished["steps"]
    ]
    assert finished["risks"] == []  # the rerun found none: the old card went with its attempt


async def test_the_pipeline_cap_stops_a_run_as_budget_and_a_raise_lets_it_go_on(
    world: PipelineWorld,
) -> None:
    await world.start(pipeline_max_usd=0.0001)
    key = await world.ticket()
    pipeline_id = (await world.create(key, cycle_type="oncall_bug"))["id"]
    failed = await world.settle(pipeline_id)
    assert failed["status"] == "failed"
    assert failed["failure"]["kind"] == "budget"
    assert failed["failure"]["phase"] == "triage"
    assert "pipeline budget reached" in failed["failure"]["message"]
    [event] = [e for e in await world.events(pipeline_id) if e["type"] == "pipeline_failed"]
    assert event["data"]["kind"] == "budget" and event["data"]["phase"] == "triage"
    assert any(
        "failed in phase triage (budget)" in c["body"] for c in world.jira.issue(key).comments
    )

    finished = await world.act(pipeline_id, "resume", {"max_cost_usd": 50})
    assert finished["status"] == "waiting_for_review"
    assert finished["max_cost_usd"] == 50 and finished["failure"] is None


async def test_the_same_tool_call_five_times_stops_the_step_as_a_loop(
    world: PipelineWorld,
) -> None:
    await world.start()
    key = await world.ticket()
    same = scripted.tool_use("glob", {"pattern": "*.py"})
    world.model.script("triage", *([same] * 6))
    pipeline_id = (await world.create(key, cycle_type="oncall_bug"))["id"]
    failed = await world.settle(pipeline_id)
    assert failed["status"] == "failed"
    assert failed["failure"]["kind"] == "loop"
    assert failed["failure"]["detail"]["last_tool_call"]["tool"] == "glob"
    assert step_of(failed, "triage")["status"] == "failed"
    assert len(world.model.requests_of("triage")) == 5


async def test_cancel_stops_a_running_step_and_ends_the_pipeline(world: PipelineWorld) -> None:
    await world.start()
    key = await world.ticket()
    world.model.script("triage", dataclasses.replace(report({"cycle_type": "x"}), delay_s=60))
    pipeline_id = (await world.create(key, cycle_type="oncall_bug"))["id"]
    await world.anthropic.wait_for_requests(1)
    cancelled = await world.api("POST", f"/api/pipelines/{pipeline_id}/cancel")
    assert cancelled["pipeline"]["status"] == "cancelled"
    again = await world.api("POST", f"/api/pipelines/{pipeline_id}/resume", status=409)
    assert again["state"] == "cancelled"
    await asyncio.wait_for(world.settle(pipeline_id), 5)


async def test_the_step_cap_stops_a_run_as_budget(world: PipelineWorld) -> None:
    await world.start(pipeline_step_max_usd=0.0001)
    key = await world.ticket()
    pipeline_id = (await world.create(key, cycle_type="oncall_bug"))["id"]
    failed = await world.settle(pipeline_id)
    assert failed["failure"]["kind"] == "budget"
    assert "step budget reached" in failed["failure"]["message"]
    assert len(world.model.requests_of("triage")) == 1  # stopped before a second turn
    wrong = await world.api(
        "POST", f"/api/pipelines/{pipeline_id}/pause", {"max_cost_usd": 5}, status=400
    )
    assert "raised by resume" in wrong["error"]["message"]
    # Later steps keep the small cap of the settings, so the raise is for the failed step only:
    # it goes on, and the next step stops at its own cap.
    again = await world.act(pipeline_id, "resume", {"step_max_cost_usd": 5})
    assert step_of(again, "triage")["status"] == "completed"
    assert again["failure"]["phase"] == "reproduce"


async def test_a_phase_over_its_time_limit_fails_as_time_limit(world: PipelineWorld) -> None:
    await world.start()
    phases = [{"phase": "triage", "time_limit_s": 1}, {"phase": "pull_request"}]
    await world.api("PUT", "/api/cycle-types/quick", {"phases": phases})
    key = await world.ticket()
    world.model.script("triage", dataclasses.replace(report({"cycle_type": "x"}), delay_s=30))
    pipeline_id = (await world.create(key, cycle_type="quick"))["id"]
    failed = await world.settle(pipeline_id)
    assert failed["failure"]["kind"] == "time_limit"
    assert failed["failure"]["message"] == "the step ran over its 1s limit"
    assert step_of(failed, "triage")["status"] == "failed"
