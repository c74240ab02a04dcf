"""The pipeline pages without a browser: the login they need, 404, escaping, what they offer."""

from __future__ import annotations

import pytest

from bot.pipelines.views import PipelineView, StepView
from tests.conftest import AppClient
from tests.helpers import API_TOKEN
from tests.pipelines.world import PipelineWorld
from web.pipeline_pages import activity_step, controls_for, step_actions, web_link

HOSTILE = '<script>alert("summary")</script>'
HOSTILE_DESCRIPTION = "<img src=x onerror=alert(1)> & more"


async def logged_in(client: AppClient) -> None:
    await client.get("/login", params={"token": API_TOKEN}, allow_redirects=False)


@pytest.mark.parametrize(
    "path", ["/pipelines", "/pipelines/1", "/pipelines/1/state", "/pipelines/1/diff"]
)
async def test_the_pipeline_pages_need_the_login(client: AppClient, path: str) -> None:
    response = await client.get(path, headers={"Accept": "text/html"})
    assert response.status == 401
    assert "/login?token=" in await response.text()
    await logged_in(client)
    assert (await client.get("/pipelines")).status == 200


@pytest.mark.parametrize("path", ["/pipelines/999", "/pipelines/999/state", "/pipelines/999/diff"])
async def test_an_unknown_pipeline_is_404(client: AppClient, path: str) -> None:
    await logged_in(client)
    response = await client.get(path)
    assert response.status == 404
    assert "No pipeline #999" in await response.text()


async def test_hostile_ticket_text_is_escaped_on_both_pages(world: PipelineWorld) -> None:
    client = await world.start()
    key = await world.ticket(HOSTILE, description=HOSTILE_DESCRIPTION, labels=("backend",))
    created = await world.create(key, start=False)
    await logged_in(client)
    for path in ("/pipelines", f"/pipelines/{created['id']}", f"/pipelines/{created['id']}/state"):
        html = await (await client.get(path)).text()
        assert "<script>alert" not in html and "<img src=x" not in html, path
        assert "&lt;script&gt;alert(&#34;summary&#34;)&lt;/script&gt;" in html, path
    page = await (await client.get(f"/pipelines/{created['id']}")).text()
    assert "&lt;img src=x onerror=alert(1)&gt; &amp; more" in page


def test_only_web_addresses_become_links() -> None:
    assert web_link("https://github.com/o/r/pull/1") == "https://github.com/o/r/pull/1"
    for hostile in ("javascript:alert(1)", "JavaScript:alert(1)", "data:text/html,x", "", None):
        assert web_link(hostile) is None


def test_a_pipeline_offers_the_lifecycle_actions_its_state_allows() -> None:
    assert controls_for("created") == ["start", "cancel"]
    assert controls_for("running") == ["pause", "cancel"]
    assert controls_for("waiting_for_approval") == ["pause", "cancel"]
    assert controls_for("paused") == ["resume", "cancel"]
    assert controls_for("failed") == ["resume", "cancel"]
    assert controls_for("completed") == []


def step(
    status: str, gate: str = "none", *, position: int = 1, started_at: str | None = None
) -> StepView:
    return StepView(
        id=position, position=position, phase="plan", agent="planner", status=status,
        attempt=1, gate=gate, output=None, reported=None, artifacts=[], cost_usd=0.0,
        error=None, approved_by=None, approved_at=None, approval_note=None,
        started_at=started_at, finished_at=None, history=[], feedback=[],
    )  # fmt: skip


def test_a_plan_waiting_for_approval_offers_approve_feedback_and_restart() -> None:
    offered = step_actions("waiting_for_approval", step("waiting_for_approval", "plan_approval"))
    assert offered == {"approve", "feedback", "restart"}


def test_a_running_or_pending_step_offers_nothing_and_an_open_pr_freezes_the_steps() -> None:
    assert step_actions("running", step("running")) == set()
    assert step_actions("running", step("pending")) == set()
    assert step_actions("waiting_for_review", step("completed")) == set()
    assert step_actions("paused", step("stale")) == {"restart"}


def view_of(*steps: StepView) -> PipelineView:
    return PipelineView(
        id=1, ticket="ACME-1", cycle_type="backend", cycle_reason=None, status="running",
        cost_usd=0.0, repositories=[], branch=None, trigger="api", created_by=None,
        created_at="", updated_at="", started_at=None, finished_at=None, failure=None,
        max_cost_usd=None, steps=list(steps),
    )  # fmt: skip


def test_the_live_panel_follows_the_running_step_else_the_last_started() -> None:
    at = "2026-11-24T15:40:00Z"
    first, second = step("completed", started_at=at), step("pending", position=2, started_at=at)
    assert activity_step(view_of(first, second)) == second  # one stamp: the later position
    running = step("running", position=3)
    assert activity_step(view_of(first, second, running)) == running
    assert activity_step(view_of(step("pending"))) is None
