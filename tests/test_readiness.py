"""GET /readyz through the real server: 200 while the database answers, 503 when it does not,
and each integration's state (ok, degraded, off); /healthz stays a bare liveness check."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bot.config import Secret
from storage import jira_sync
from storage.jira_sync import RunStatus, SyncKind
from tests.conftest import AppClient, StartApp
from tests.fakes.jira import FakeJira
from tests.helpers import jira_settings, make_settings
from web.keys import DB, SERVICES


async def ready(client: AppClient, status: int = 200) -> dict[str, Any]:
    response = await client.get("/readyz")  # open, as orchestrators probe it without a token
    assert response.status == status
    body: dict[str, Any] = await response.json()
    return body


def states(body: dict[str, Any]) -> dict[str, str]:
    return {name: found["state"] for name, found in body["integrations"].items()}


async def test_readyz_is_200_and_names_each_integrations_state(client: AppClient) -> None:
    body = await ready(client)
    assert (body["status"], body["database"]) == ("ready", "ok")
    assert states(body) == {
        "github": "off",
        "webhooks": "ok",
        "agents": "off",
        "jira": "off",
        "work": "ok",
    }
    assert body["degraded"] == ["github", "agents", "jira"]
    assert body["integrations"]["agents"]["detail"] == "ANTHROPIC_API_KEY is not set"


async def test_healthz_stays_a_liveness_check(client: AppClient) -> None:
    response = await client.get("/healthz")
    assert (response.status, await response.json()) == (200, {"status": "ok"})


async def test_the_github_app_is_ok_once_its_identity_loaded(scenario: Any) -> None:
    assert states(await ready(scenario.client))["github"] == "ok"


async def test_a_github_app_whose_identity_did_not_load_is_degraded(
    start_app: StartApp, tmp_path: Path, app_key: tuple[str, str]
) -> None:
    unreachable = make_settings(
        tmp_path,
        github_app_id="4242",
        github_private_key=Secret(app_key[0]),
        github_api_url="http://127.0.0.1:9",
    )
    client = await start_app(unreachable)
    body = await ready(client)
    assert states(body)["github"] == "degraded"
    assert "github" in body["degraded"]


async def test_jira_whose_last_sync_failed_is_degraded(
    start_app: StartApp, tmp_path: Path, fake_jira: FakeJira
) -> None:
    client = await start_app(jira_settings(tmp_path, fake_jira))
    assert states(await ready(client))["jira"] == "ok"
    db, clock = client.app[SERVICES].db, client.app[SERVICES].clock
    run = await jira_sync.start_run(
        db, project="ACME", kind=SyncKind.INCREMENTAL, trigger="schedule", now=clock.now()
    )
    await jira_sync.finish_run(
        db, run, status=RunStatus.FAILED, seen=0, created=0, updated=0, deleted=0,
        requests=1, error="401 from JIRA", now=clock.now(),
    )  # fmt: skip
    body = await ready(client)
    assert states(body)["jira"] == "degraded"
    assert "401" not in str(body)  # states only: the answer is open


async def test_readyz_is_503_when_the_database_does_not_answer(client: AppClient) -> None:
    await client.app[DB].close()
    body = await ready(client, 503)
    assert (body["status"], body["database"]) == ("unavailable", "unavailable")
    assert "agents" in body["integrations"]
