"""The dashboard with real pipelines (the pipeline world: the real app, the scripted model, the
JIRA and GitHub fakes, a bare remote): what needs a person, as each gate holds and lets go.
Without a browser; tests/pipelines/test_pages_browser.py opens it in Chromium."""

from __future__ import annotations

from tests.fakes import anthropic as scripted
from tests.helpers import page_html, section_of
from tests.pipelines.world import PipelineWorld, done, step_of

HOSTILE = '<img src=x onerror="alert(1)">'
ESCAPED = "&lt;img src=x onerror=&#34;alert(1)&#34;&gt;"
QUESTION = {"question": f"Greet with which word? {HOSTILE}", "choices": ["Hello", "Hey"]}


async def test_the_dashboard_leads_with_each_gate_as_it_holds_and_lets_go(
    world: PipelineWorld,
) -> None:
    client = await world.start()
    world.model.script_gated_change()
    key = await world.ticket(labels=("backend",))
    held = await world.settle((await world.create(key))["id"])
    plan = step_of(held, "plan")
    assert held["status"] == "waiting_for_approval"

    html = await page_html(client, "/")
    waiting = section_of(html, "attention")
    assert f'data-step="{plan["id"]}"' in waiting
    assert f'href="/pipelines/{held["id"]}#step-{plan["id"]}"' in waiting
    assert html.index('id="attention"') < html.index('id="under-way"')

    after_plan = await world.act(held["id"], f"steps/{plan['id']}/approve", {"approved_by": "mia"})
    [risk] = after_plan["risks"]
    waiting = section_of(await page_html(client, "/dashboard/state"), "attention")
    assert f'data-risk="{risk["id"]}"' in waiting and "data-step=" not in waiting
    assert f"/api/pipelines/{held['id']}/risks/{risk['id']}/acknowledge" in waiting

    opened = await world.act(
        held["id"], f"risks/{risk['id']}/acknowledge", {"acknowledged_by": "mia"}
    )
    assert opened["status"] == "waiting_for_review"
    assert "Nothing waits for a person." in await page_html(client, "/dashboard/state")


async def test_a_question_and_a_failed_pipeline_wait_for_a_person_escaped(
    world: PipelineWorld,
) -> None:
    client = await world.start()
    looping = scripted.tool_use("glob", {"pattern": "*.py"})
    world.model.script("triage", *([looping] * 6))
    failed = await world.settle(
        (await world.create(await world.ticket(), cycle_type="oncall_bug"))["id"]
    )
    assert failed["status"] == "failed"
    world.model.script("planner", scripted.tool_use("request_clarification", QUESTION), done())
    key = await world.ticket(HOSTILE, labels=("backend",))
    asking = await world.settle((await world.create(key))["id"])
    [question] = asking["clarifications"]

    html = await page_html(client, "/")
    waiting = section_of(html, "attention")
    assert f'data-clarification="{question["id"]}"' in waiting
    assert f"/api/clarifications/{question['id']}/answer" in waiting
    assert "<option>Hello</option>" in waiting
    assert f'data-pipeline="{failed["id"]}"' in waiting and "loop" in waiting
    assert f"/api/pipelines/{failed['id']}/resume" in waiting
    assert ESCAPED in html and HOSTILE not in html
