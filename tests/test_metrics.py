"""GET /metrics through the real server: behind the token, Prometheus text, and figures read from
the database when scraped (deliveries, dispatcher lag, review batches, agents, JIRA, pipelines)."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from bot.clock import ManualClock
from bot.metrics import LoopLagProbe
from storage import agent_runs, claude_sessions, deliveries, jira_sync, pipelines
from storage.agent_runs import RunStatus as AgentRunStatus
from storage.jira_sync import RunStatus, SyncKind
from tests.conftest import AppClient, StartApp
from tests.helpers import auth_headers, github_headers, load_json
from web.keys import DISPATCHER, SERVICES

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


async def scrape(client: AppClient) -> Samples:
    """Every sample of a scrape, keyed by (name, sorted labels); the text must parse."""
    response = await client.get("/metrics", headers=auth_headers())
    assert response.status == 200
    assert response.content_type == "text/plain"
    samples: Samples = {}
    for family in text_string_to_metric_families(await response.text()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


async def send_ping(client: AppClient) -> None:
    body = json.dumps(load_json("github/ping/payload.json")).encode()
    sent = await client.post("/webhooks/github", data=body, headers=github_headers("ping", body))
    assert sent.status == 202
    await client.app[DISPATCHER].drain()


async def test_metrics_need_the_token(client: AppClient) -> None:
    assert (await client.get("/metrics")).status == 401
    wrong = await client.get("/metrics", headers={"Authorization": "Bearer not-it"})
    assert wrong.status == 401


async def test_a_delivery_sent_is_counted_in_the_next_scrape(client: AppClient) -> None:
    before = await scrape(client)
    assert value(before, "biagent_deliveries", status="done") == 0
    assert value(before, "biagent_deliveries", status="pending") == 0
    await send_ping(client)
    after = await scrape(client)
    assert value(after, "biagent_deliveries", status="done") == 1
    assert value(after, "biagent_dispatcher_lag_seconds") == 0


async def test_the_process_and_loop_figures_are_there(client: AppClient) -> None:
    samples = await scrape(client)
    assert value(samples, "process_resident_memory_bytes") > 0
    assert value(samples, "biagent_event_loop_lag_seconds") >= 0
    assert value(samples, "biagent_websocket_clients") == 0
    assert value(samples, "biagent_integration_state", integration="agents", state="off") == 1


async def test_websocket_clients_are_counted(client: AppClient) -> None:
    async with client.ws_connect("/ws?streams=*", headers=auth_headers()) as ws:
        assert (await ws.receive_json())["control"] == "hello"
        assert (await ws.receive_json())["control"] == "live"
        assert value(await scrape(client), "biagent_websocket_clients") == 1


async def test_a_due_delivery_left_waiting_shows_as_dispatcher_lag(
    start_app: StartApp, settings: Any, manual_clock: ManualClock
) -> None:
    client = await start_app(settings, clock=manual_clock)
    await asyncio.sleep(0.3)  # the dispatcher's first look finds nothing: it polls in 30 s
    # Stored without waking the dispatcher, due in 30 s of the test's clock: moved on 120 s,
    # the delivery has waited 90 s for it.
    await deliveries.accept(
        client.app[SERVICES].db, source="github", delivery_id="late", event="ping",
        action=None, installation_id=None, payload="{}",
        now=manual_clock.now() + timedelta(seconds=30),
    )  # fmt: skip
    await manual_clock.advance(120)
    samples = await scrape(client)
    assert value(samples, "biagent_dispatcher_lag_seconds") == 90
    assert value(samples, "biagent_deliveries", status="pending") == 1


async def test_a_gathering_review_batch_is_pending_with_its_age(scenario: Any) -> None:
    await scenario.send("pull_request_review_comment", scenario.review_comment("Rename this."))
    await scenario.clock.advance(12)
    samples = await scrape(scenario.client)
    assert value(samples, "biagent_review_batches_pending", status="gathering") == 1
    assert value(samples, "biagent_review_batches_pending", status="running") == 0
    assert value(samples, "biagent_review_batch_oldest_pending_age_seconds") == 12
    assert value(samples, "biagent_integration_state", integration="github", state="ok") == 1


async def test_agent_runs_and_dollars_are_shown_by_agent(client: AppClient) -> None:
    db, now = client.app[SERVICES].db, client.app[SERVICES].clock.now()
    session = await claude_sessions.create(
        db, session_key="pr:o/r#1/batch:1", agent="review_response", model="m",
        pipeline_id=None, step_id=None, pr="o/r#1", now=now,
    )  # fmt: skip
    for cost in (0.25, 0.5):
        run = await agent_runs.start(
            db, session_id=session.id, agent="review_response", stream="s", now=now
        )
        await agent_runs.record_cost(
            db, run_id=run.id, session_id=session.id, pipeline_id=None, pr="o/r#1", model="m",
            input_tokens=1, output_tokens=1, cache_write_tokens=0, cache_read_tokens=0,
            cost_usd=cost, now=now,
        )  # fmt: skip
    await agent_runs.finish(
        db, run.id, status=AgentRunStatus.COMPLETED, reason=None, error=None, turns=1,
        cost_usd=0.5, now=now,
    )  # fmt: skip
    samples = await scrape(client)
    runs = {"agent": "review_response"}
    assert value(samples, "biagent_agent_runs", **runs, status="running") == 1
    assert value(samples, "biagent_agent_runs", **runs, status="completed") == 1
    assert value(samples, "biagent_agent_cost_dollars_total", **runs) == pytest.approx(0.75)


async def test_jira_sync_age_and_errors_by_project(client: AppClient) -> None:
    db, clock = client.app[SERVICES].db, client.app[SERVICES].clock
    for project, outcomes in (("ACME", [RunStatus.COMPLETE, RunStatus.FAILED]), ("OPS", [])):
        for status in [*outcomes, RunStatus.COMPLETE] if project == "OPS" else outcomes:
            run = await jira_sync.start_run(
                db, project=project, kind=SyncKind.FULL, trigger="schedule", now=clock.now()
            )
            await jira_sync.finish_run(
                db, run, status=status, seen=0, created=0, updated=0, deleted=0, requests=1,
                error="boom" if status is RunStatus.FAILED else None, now=clock.now(),
            )  # fmt: skip
    samples = await scrape(client)
    assert value(samples, "biagent_jira_sync_errors_total", project="ACME") == 1
    assert value(samples, "biagent_jira_sync_last_failed", project="ACME") == 1
    assert value(samples, "biagent_jira_sync_last_failed", project="OPS") == 0
    assert 0 <= value(samples, "biagent_jira_sync_age_seconds", project="OPS") < 60


async def test_pipelines_are_shown_by_status(client: AppClient) -> None:
    db, now = client.app[SERVICES].db, client.app[SERVICES].clock.now()
    for ticket in ("ACME-1", "ACME-2"):
        await pipelines.create_pipeline(
            db, ticket_key=ticket, repositories=["o/r"], trigger="api", created_by=None, now=now
        )
    assert value(await scrape(client), "biagent_pipelines", status="created") == 2


async def test_the_loop_lag_probe_measures_how_late_a_timer_ran() -> None:
    ticks = iter([10.0, 10.26])
    probe = LoopLagProbe(sleep_s=0.01, timer=lambda: next(ticks))
    assert await probe.measure() == pytest.approx(0.25)
    assert probe.last_s == probe.max_s == pytest.approx(0.25)
