"""The engine's edges a review found: a pipeline never completes with steps undone, never stays
running without a task, and a second pipeline for a ticket opens its own pull request."""

from __future__ import annotations

import asyncio

from storage import pipelines as pipeline_rows
from storage import step_outputs
from tests.fakes import anthropic as scripted
from tests.helpers import auth_headers
from tests.pipelines.world import REPO, PipelineWorld, report, step_of
from web.keys import PIPELINES

QUESTION = {"question": "Which greeting?", "choices": ["hello", "hi"]}


async def test_a_resume_while_a_question_is_open_goes_back_to_waiting(
    world: PipelineWorld,
) -> None:
    await world.start()
    key = await world.ticket()
    world.model.script("triage", scripted.tool_use("request_clarification", QUESTION))
    pipeline_id = (await world.create(key, cycle_type="oncall_bug"))["id"]
    waiting = await world.settle(pipeline_id)
    assert waiting["status"] == "waiting_for_input"
    await world.api("POST", f"/api/pipelines/{pipeline_id}/pause")
    again = await world.act(pipeline_id, "resume")
    assert again["status"] == "waiting_for_input"  # not completed with four steps undone
    assert [s["status"] for s in again["steps"]][1:] == ["pending"] * 4
    assert len(world.model.requests_of("triage")) == 1  # the open question is not asked again


async def test_acknowledging_a_risk_on_a_failed_pipeline_keeps_it_failed(
    world: PipelineWorld,
) -> None:
    await world.start()
    key = await world.ticket(labels=("backend",))
    world.model.script("risk", report({"risks": [{"title": "Slow", "severity": "medium"}]}))
    same = scripted.tool_use("glob", {"pattern": "*.py"})
    world.model.script("implementer", *([same] * 6))
    failed = await world.drive((await world.create(key))["id"])
    assert failed["status"] == "failed" and failed["failure"]["kind"] == "loop"
    [risk] = failed["risks"]
    after = await world.act(failed["id"], f"risks/{risk['id']}/acknowledge")
    assert after["status"] == "failed"
    assert step_of(after, "implement")["status"] == "failed"
    assert step_of(after, "pull_request")["status"] == "pending"


async def test_a_second_pipeline_for_a_ticket_opens_its_own_pull_request(
    world: PipelineWorld,
) -> None:
    await world.start()
    key = await world.ticket()
    first = await world.drive((await world.create(key, cycle_type="oncall_bug"))["id"])
    assert first["status"] == "waiting_for_review"
    world.github.pulls[(REPO, first["pull_requests"][0]["number"])]["state"] = "closed"
    await world.app_client.app[PIPELINES].pull_request_closed(
        REPO, first["pull_requests"][0]["number"], merged=False
    )
    second = await world.drive((await world.create(key, cycle_type="oncall_bug"))["id"])
    assert second["status"] == "waiting_for_review", second.get("failure")
    assert len(world.github.opened_pulls) == 2
    assert second["pull_requests"][0]["number"] != first["pull_requests"][0]["number"]


async def test_a_stop_right_after_triage_still_decides_the_cycle_type(
    world: PipelineWorld,
) -> None:
    await world.start()
    key = await world.ticket(summary="Look into how greetings work")  # no rule matches
    created = await world.create(key, start=False)
    [triage] = created["steps"]
    db, now = world.db(), world.clock.now()
    chosen = {"cycle_type": "spike", "summary": "A question."}
    await db.write_many(  # the triage step's commit, and nothing after it: the process died
        [
            step_outputs.save_output(triage["id"], 1, "A question.", chosen, now=now),
            pipeline_rows.step_status(triage["id"], "completed", now=now),
            pipeline_rows.pipeline_status(created["id"], "running", now=now),
        ]
    )
    await world.app_client.app[PIPELINES].engine.recover()
    done = await world.drive(created["id"])
    assert done["cycle_type"] == "spike"
    assert [s["phase"] for s in done["steps"]] == ["triage", "research", "report"]
    assert done["status"] == "completed"
    assert world.model.requests_of("triage") == []  # decided from the stored report


async def test_two_approvals_at_once_are_one_approval_and_a_409(world: PipelineWorld) -> None:
    await world.start()
    key = await world.ticket(labels=("backend",))
    world.model.script_gated_change()
    pipeline_id = (await world.create(key))["id"]
    plan = step_of(await world.settle(pipeline_id), "plan")
    path = f"/api/pipelines/{pipeline_id}/steps/{plan['id']}/approve"
    answers = await asyncio.gather(
        *(world.app_client.post(path, json={"by": who}, headers=auth_headers())
          for who in ("mia", "ada"))
    )  # fmt: skip
    assert sorted(answer.status for answer in answers) == [200, 409]
    await world.settle(pipeline_id)
    given = [e for e in await world.events(pipeline_id) if e["type"] == "approval_given"]
    assert len(given) == 1
