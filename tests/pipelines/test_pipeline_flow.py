"""A ticket becomes a pull request through every phase, driven through the real app's API."""

from __future__ import annotations

from tests.pipelines.world import REPO, PipelineWorld, step_of

BACKEND = ["triage", "plan", "risk", "implement", "test", "self_review", "pull_request"]


async def test_a_backend_ticket_becomes_a_pull_request_through_its_gates(
    world: PipelineWorld,
) -> None:
    await world.start()
    key = await world.ticket(labels=("backend",))
    world.model.script_gated_change()
    created = await world.create(key)
    assert created["cycle_type"] == "backend"
    assert created["cycle_reason"].startswith("rule")
    assert [step["phase"] for step in created["steps"]] == BACKEND

    held = await world.settle(created["id"])
    assert held["status"] == "waiting_for_approval"
    plan = step_of(held, "plan")
    assert plan["status"] == "waiting_for_approval"
    assert step_of(held, "risk")["status"] == "pending"  # the plan gate holds

    at_risk = await world.act(
        created["id"], f"steps/{plan['id']}/approve", {"approved_by": "mia", "note": "fine"}
    )
    assert at_risk["status"] == "waiting_for_approval"
    assert step_of(at_risk, "plan")["approved_by"] == "mia"
    [risk] = at_risk["risks"]
    assert risk["severity"] == "high" and risk["acknowledged_at"] is None
    assert step_of(at_risk, "implement")["status"] == "pending"  # the risk gate holds

    opened = await world.act(
        created["id"], f"risks/{risk['id']}/acknowledge", {"acknowledged_by": "mia"}
    )
    assert opened["status"] == "waiting_for_review", opened.get("failure")
    assert all(step["status"] == "completed" for step in opened["steps"])
    [pull] = opened["pull_requests"]
    assert pull["repository"] == REPO
    [made] = world.github.opened_pulls
    assert made["title"] == "Say hello in greet()"
    assert key in made["body"] and "Change greet() to say Hello" in made["body"]
    assert made["head"]["ref"] == opened["branch"]
    assert world.branch_file(opened["branch"], "greet.py").count('"Hello "') == 1
    notes = [comment["body"] for comment in world.jira.issue(key).comments]
    assert any(pull["url"] in note for note in notes), notes
    offered = {tool["name"] for tool in world.model.requests_of("planner")[0].body["tools"]}
    assert {"jira_cli", "github_cli", "file_read"} <= offered
    assert "file_write" not in offered  # the planner's own tools, and the pipeline's
    kinds = [event["type"] for event in await world.events(created["id"])]
    for kind in ("pipeline_started", "step_started", "step_completed", "waiting_for_approval",
                 "approval_given", "risk_identified", "risk_acknowledged"):  # fmt: skip
        assert kind in kinds
