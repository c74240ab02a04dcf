"""A person away while a real pipeline runs: what it needs from them waits as offline events,
and the session restored on return shows the pipeline as it stands (docs/sessions.md)."""

from __future__ import annotations

from tests.pipelines.world import PipelineWorld, step_of
from tests.sessions_helpers import connect, new_session, open_tabs, recorded


async def test_a_plan_and_a_risk_waiting_while_away_are_told_on_return(
    world: PipelineWorld,
) -> None:
    client = await world.start()
    key = await world.ticket(labels=("backend",))
    session_id = await new_session(client)
    await open_tabs(client, session_id, {"kind": "ticket", "ref": key})
    world.model.script_gated_change()
    pipeline = await world.create(key)
    held = await world.settle(pipeline["id"])
    plan = step_of(held, "plan")
    await world.act(pipeline["id"], f"steps/{plan['id']}/approve", {"approved_by": "mia"})
    await recorded(client)

    ws, before = await connect(client, session_id)
    await ws.close()
    restored, *offline = before
    assert restored["data"]["unread"] == len(offline)
    told = [(frame["data"]["event"]["type"], frame["data"]["event"]["stream"]) for frame in offline]
    stream = f"pipeline:{pipeline['id']}"
    assert told == [
        ("waiting_for_approval", stream),  # the plan
        ("risk_identified", stream),
        ("waiting_for_approval", stream),  # the high risk
    ]

    await open_tabs(client, session_id, {"kind": "pipeline", "ref": str(pipeline["id"])})
    answer = await world.api("POST", f"/api/sessions/{session_id}/restore")
    [shown] = answer["pipelines"]
    assert shown["status"] == "waiting_for_approval"
    assert [risk["severity"] for risk in shown["risks"]] == ["high"]
    assert answer["unread"] == 3
