"""The composition root: each context stores its key, Services is frozen, teardown is ordered."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from bot.clock import ManualClock
from tests.conftest import AppClient
from tests.helpers import make_settings
from web.app import create_app
from web.keys import BUS, DB, DISPATCHER, INTAKE, SCHEDULER, SERVICES, WORKTREES


async def test_every_resource_is_stored_under_its_own_key(client: AppClient) -> None:
    services = client.app[SERVICES]
    assert (services.db, services.bus, services.worktrees) == (
        client.app[DB],
        client.app[BUS],
        client.app[WORKTREES],
    )
    assert client.app[INTAKE].wake == client.app[DISPATCHER].wake


async def test_services_cannot_be_changed_once_built(client: AppClient) -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        client.app[SERVICES].jira = None  # type: ignore[misc]


async def test_the_periodic_jobs_are_on_the_scheduler_and_stop_with_the_app(
    tmp_path: Path, manual_clock: ManualClock
) -> None:
    app = create_app(make_settings(tmp_path), clock=manual_clock)
    client = TestClient(TestServer(app))
    await client.start_server()
    scheduler = app[SCHEDULER]
    jobs = [scheduler.job(name) for name in ("housekeeping", "worktree-sweeps")]
    assert [(job.every_s, job.run_at_start) for job in jobs if job] == [(600.0, False)] * 2
    tasks = [job.task for job in jobs if job and job.task]
    await client.close()
    assert scheduler.job("housekeeping") is None and scheduler.job("worktree-sweeps") is None
    assert all(task.done() for task in tasks)
