"""BIAGENT_ROLE: a web instance and a worker on one PostgreSQL split the work (bot/roles.py).

The web instance stores a signed delivery and works nothing; the worker, which serves the
probes alone, finds the delivery by polling and dispatches it. A split on SQLite is refused
at start, by the settings and by the app factory alike.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from bot.config import ConfigError, load_settings
from bot.events.bus import Frame
from bot.roles import Role
from storage import tickets
from storage.database import Database
from storage.ticket_records import TicketRecord
from tests.conftest import AppClient, StartApp
from tests.helpers import auth_headers, github_headers, load_json, make_settings
from tests.worktree_helpers import make_remote
from web.app import create_app
from web.keys import DISPATCHER, INTAKE, PIPELINES, SERVICES

ROOT = Path(__file__).resolve().parent.parent


async def start_instance(
    start_app: StartApp, tmp_path: Path, url: str, role: Role, **overrides: Any
) -> AppClient:
    """One instance of `role` on `url`, with its own directory (its own local disk)."""
    home = tmp_path / role.value
    home.mkdir(exist_ok=True)
    settings = make_settings(
        home,
        database_url=url,
        role=role,
        instance_id=f"{role.value}-1",
        worker_poll_interval=0.05,
        **overrides,
    )
    return await start_app(settings)


def stored_frames(client: AppClient, type_name: str) -> tuple[list[Frame], asyncio.Event]:
    """The frames of `type_name` the instance's bus commits from now on, and an event set at
    each one."""
    seen: list[Frame] = []
    arrived = asyncio.Event()

    def listen(frame: Frame) -> None:
        if frame.type == type_name:
            seen.append(frame)
            arrived.set()

    client.app[SERVICES].bus.on_stored(listen)
    return seen, arrived


async def deliveries_of(client: AppClient) -> list[tuple[str, str]]:
    response = await client.get("/api/deliveries", headers=auth_headers())
    assert response.status == 200
    return [(d["delivery_id"], d["status"]) for d in (await response.json())["deliveries"]]


async def test_a_web_instance_stores_a_delivery_and_a_worker_dispatches_it(
    shared_postgres_url: str, start_app: StartApp, tmp_path: Path
) -> None:
    web = await start_instance(start_app, tmp_path, shared_postgres_url, Role.WEB)
    assert DISPATCHER not in web.app and INTAKE in web.app  # it stores, it works nothing
    assert not web.app[PIPELINES].engine.tasks.runs_here
    body = json.dumps(load_json("github/ping/payload.json")).encode()
    response = await web.post(
        "/webhooks/github", data=body, headers=github_headers("ping", body, delivery_id="d-1")
    )
    assert response.status == 202 and (await response.json())["status"] == "accepted"
    assert await deliveries_of(web) == [("d-1", "pending")]

    worker = await start_instance(start_app, tmp_path, shared_postgres_url, Role.WORKER)
    processed, arrived = stored_frames(worker, "delivery_processed")
    second = json.dumps(load_json("github/ping/payload.json")).encode()
    response = await web.post(
        "/webhooks/github", data=second, headers=github_headers("ping", second, delivery_id="d-2")
    )
    assert response.status == 202
    while len(processed) < 2:  # d-1 at the worker's start-up or first look, d-2 by polling
        arrived.clear()
        await asyncio.wait_for(arrived.wait(), 30)
    assert sorted(await deliveries_of(web)) == [("d-1", "done"), ("d-2", "done")]
    assert sorted(json.loads(frame.text)["data"]["delivery_pk"] for frame in processed) == [1, 2]


async def test_a_worker_serves_the_probes_and_nothing_else(
    shared_postgres_url: str, start_app: StartApp, tmp_path: Path
) -> None:
    worker = await start_instance(start_app, tmp_path, shared_postgres_url, Role.WORKER)
    assert (await worker.get("/healthz")).status == 200
    ready = await worker.get("/readyz")
    assert ready.status == 200
    assert (await ready.json())["role"] == "worker"
    metrics = await worker.get("/metrics", headers=auth_headers())
    assert metrics.status == 200 and "biagent_" in await metrics.text()
    assert (await worker.get("/metrics")).status == 401  # the probes' metrics need the token
    for path in ("/api/deliveries", "/", "/worktrees", "/ws", "/api/pipelines"):
        assert (await worker.get(path, headers=auth_headers())).status == 404, path
    body = b'{"zen": "x"}'
    hook = await worker.post("/webhooks/github", data=body, headers=github_headers("ping", body))
    assert hook.status == 404
    web = await start_instance(start_app, tmp_path, shared_postgres_url, Role.WEB)
    shown = await (await web.get("/readyz")).json()
    assert shown["role"] == "web"
    assert shown["integrations"]["agents"]["detail"] == "a web instance: the workers run them"
    assert (await web.get("/api/deliveries", headers=auth_headers())).status == 200


@pytest.mark.parametrize("role", [Role.WEB, Role.WORKER])
def test_a_split_role_on_sqlite_is_refused_at_start(tmp_path: Path, role: Role) -> None:
    environment = {"DATABASE_URL": f"sqlite:///{tmp_path / 'b.db'}", "BIAGENT_ROLE": role}
    with pytest.raises(ConfigError) as refused:
        load_settings(environment)
    assert refused.value.problems[0].startswith(f"BIAGENT_ROLE: {role} needs PostgreSQL")
    with pytest.raises(ConfigError, match="BIAGENT_ROLE=all"):
        create_app(make_settings(tmp_path, database_url=environment["DATABASE_URL"], role=role))
    started = subprocess.run(
        [sys.executable, "-m", "bot"],
        cwd=ROOT,
        env={**os.environ, **environment, "PORT": "0"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert started.returncode == 2
    assert f"BIAGENT_ROLE: {role} needs PostgreSQL" in started.stderr


def test_the_role_and_instance_are_read_and_checked() -> None:
    url = "postgresql://biagent@localhost/biagent"
    settings = load_settings(
        {"DATABASE_URL": url, "BIAGENT_ROLE": "Worker", "BIAGENT_INSTANCE_ID": "box-7"}
    )
    assert (settings.role, settings.instance_id) == (Role.WORKER, "box-7")
    assert settings.summary()[0] == "role: worker (instance box-7)"
    assert load_settings({}).role is Role.ALL
    assert load_settings({}).instance_id == load_settings({}).instance_id  # stable per start
    with pytest.raises(ConfigError, match="BIAGENT_ROLE: one of all, web, worker; got both"):
        load_settings({"DATABASE_URL": url, "BIAGENT_ROLE": "both"})


async def store_ticket(url: str, key: str) -> None:
    """`key` in the JIRA mirror, as a sync would have stored it."""
    db = await Database.open(url)
    try:
        record = TicketRecord(
            id="10001", key=key, project=key.split("-")[0], summary="Export invoices",
            description=None, status="To Do", status_category="new", issue_type="Task",
            priority=None, assignee=None, reporter=None, resolution=None, labels=(),
            components=(), parent_key=None, subtask_keys=(), comments=(), changelog=(),
            created_at=None, updated_at="2026-11-24T15:40:00.000Z", updated_ms=1,
        )  # fmt: skip
        await tickets.store_tickets(db, [record], now=datetime.now(UTC))
    finally:
        await db.close()


async def test_a_pipeline_started_on_a_web_instance_is_run_by_a_worker(
    shared_postgres_url: str, start_app: StartApp, tmp_path: Path
) -> None:
    """The web instance commits the start and runs nothing; the worker sees a running pipeline
    with no task and takes it: its first step fails there, the agents being off on it."""
    await store_ticket(shared_postgres_url, "PROJ-1")
    web = await start_instance(start_app, tmp_path, shared_postgres_url, Role.WEB)
    worker = await start_instance(start_app, tmp_path, shared_postgres_url, Role.WORKER)
    failed, arrived = stored_frames(worker, "pipeline_failed")
    remote = make_remote(tmp_path, "octo/app", {"app.py": "print(1)\n"})
    registered = await web.post(
        "/api/repositories",
        json={"full_name": "octo/app", "clone_url": remote.url},
        headers=auth_headers(),
    )
    assert registered.status in (200, 201), await registered.text()
    response = await web.post(
        "/api/pipelines",
        json={"ticket": "PROJ-1", "repository": "octo/app", "cycle_type": "spike"},
        headers=auth_headers(),
    )
    assert response.status in (200, 201), await response.text()
    pipeline = (await response.json())["pipeline"]
    assert not web.app[PIPELINES].engine.tasks.running(pipeline["id"])
    await asyncio.wait_for(arrived.wait(), 30)
    data = json.loads(failed[0].text)["data"]
    assert data["pipeline_id"] == pipeline["id"] and "the agents are off" in json.dumps(data)
    shown = await web.get(f"/api/pipelines/{pipeline['id']}", headers=auth_headers())
    assert (await shown.json())["pipeline"]["status"] == "failed"
