"""GET/PUT /api/cycle-types through the real app: read, edit, every problem at once."""

from __future__ import annotations

import json

from tests.conftest import AppClient
from tests.helpers import auth_headers
from web.keys import DB


async def test_the_seeded_cycle_types_are_listed_with_their_phases(client: AppClient) -> None:
    response = await client.get("/api/cycle-types", headers=auth_headers())
    assert response.status == 200
    listed = {found["name"]: found for found in (await response.json())["cycle_types"]}
    assert set(listed) == {"spike", "backend", "frontend", "fullstack", "oncall_bug"}
    phases = [phase["phase"] for phase in listed["oncall_bug"]["phases"]]
    assert phases == ["triage", "reproduce", "fix", "test", "pull_request"]
    plan = listed["backend"]["phases"][1]
    assert (plan["phase"], plan["agent"], plan["gate"]) == ("plan", "planner", "plan_approval")


async def test_a_put_replaces_the_phases_and_a_get_reads_them_back(client: AppClient) -> None:
    body = {
        "description": "Quick fixes",
        "max_cost_usd": 5,
        "phases": [{"phase": "triage"}, {"phase": "fix", "max_cost_usd": 1.5}, {"phase": "test"}],
    }
    put = await client.put("/api/cycle-types/quick_fix", json=body, headers=auth_headers())
    assert put.status == 200
    saved = (await put.json())["cycle_type"]
    assert [phase["phase"] for phase in saved["phases"]] == ["triage", "fix", "test"]
    assert saved["phases"][1]["max_cost_usd"] == 1.5
    read = await client.get("/api/cycle-types/quick_fix", headers=auth_headers())
    assert (await read.json())["cycle_type"] == saved


async def test_a_bad_edit_is_refused_with_every_problem_and_nothing_stored(
    client: AppClient,
) -> None:
    body = {"phases": [{"phase": "plan"}, {"phase": "plan"}, {"phase": "nope"}]}
    put = await client.put("/api/cycle-types/backend", json=body, headers=auth_headers())
    assert put.status == 400
    error = (await put.json())["error"]
    assert error["code"] == "invalid_cycle_type"
    assert "'plan' appears twice" in error["message"]
    assert "unknown phase 'nope'" in error["message"]
    kept = await client.get("/api/cycle-types/backend", headers=auth_headers())
    assert len((await kept.json())["cycle_type"]["phases"]) == 7


async def test_an_empty_phase_list_and_an_unknown_gate_are_400(client: AppClient) -> None:
    empty = await client.put("/api/cycle-types/x", json={"phases": []}, headers=auth_headers())
    gate = await client.put(
        "/api/cycle-types/x",
        json={"phases": [{"phase": "triage", "gate": "maybe"}]},
        headers=auth_headers(),
    )
    assert (empty.status, gate.status) == (400, 400)
    assert "at least one phase" in (await empty.json())["error"]["message"]
    assert "unknown gate 'maybe'" in (await gate.json())["error"]["message"]


async def test_a_malformed_body_and_an_unknown_name_get_clear_errors(client: AppClient) -> None:
    malformed = await client.put("/api/cycle-types/x", data=b"[[[", headers=auth_headers())
    missing = await client.get("/api/cycle-types/none_such", headers=auth_headers())
    assert (malformed.status, missing.status) == (400, 404)
    assert (await malformed.json())["error"]["code"] == "malformed_body"


async def test_cycle_types_need_the_token(client: AppClient) -> None:
    assert (await client.get("/api/cycle-types")).status == 401
    refused = await client.put("/api/cycle-types/x", json={"phases": [{"phase": "triage"}]})
    assert refused.status == 401


async def test_a_phase_may_name_the_pipeline_tools_but_not_an_unknown_one(
    client: AppClient,
) -> None:
    db = client.app[DB]
    tools = ["file_read", "jira_cli", "github_cli"]
    # No API edits a phase definition's tools yet: set them as a migration would.
    await db.write(
        "UPDATE phase_definitions SET tools = ? WHERE name = 'triage'", (json.dumps(tools),)
    )
    body = {"phases": [{"phase": "triage"}]}
    accepted = await client.put("/api/cycle-types/ticket_look", json=body, headers=auth_headers())
    assert accepted.status == 200, await accepted.text()
    assert (await accepted.json())["cycle_type"]["phases"][0]["tools"] == tools
    await db.write("UPDATE phase_definitions SET tools = '[\"jira_merge\"]' WHERE name = 'triage'")
    refused = await client.put("/api/cycle-types/ticket_look", json=body, headers=auth_headers())
    assert refused.status == 400
    assert "names unknown tool 'jira_merge'" in (await refused.json())["error"]["message"]
