"""The repositories and worktrees API, and the PR closed webhook, through the real app."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from bot.clock import ManualClock
from bot.config import Settings
from bot.worktrees.manager import WorktreeManager
from storage import repositories as repository_store
from tests.conftest import AppClient, StartApp
from tests.helpers import auth_headers, github_headers, load_json
from tests.worktree_helpers import make_remote
from web.keys import DISPATCHER, SERVICES


def manager_of(client: AppClient) -> WorktreeManager:
    manager = client.app[SERVICES].worktrees
    assert manager is not None
    return manager


async def register(client: AppClient, full_name: str, clone_url: str, **extra: object) -> dict:
    response = await client.post(
        "/api/repositories",
        json={"full_name": full_name, "clone_url": clone_url, **extra},
        headers=auth_headers(),
    )
    assert response.status in (200, 201), await response.text()
    return (await response.json())["repository"]


async def test_routes_need_the_token(client: AppClient) -> None:
    for path in ("/api/repositories", "/api/worktrees", "/api/tickets/PROJ-1/repositories"):
        assert (await client.get(path)).status == 401


async def test_clone_url_with_credentials_is_refused(client: AppClient) -> None:
    response = await client.post(
        "/api/repositories",
        json={"full_name": "octo/app", "clone_url": "https://x-access-token:abc@github.com/o/a"},
        headers=auth_headers(),
    )
    assert response.status == 400
    assert (await response.json())["error"]["code"] == "credentials_in_url"


async def test_register_list_and_link_to_a_ticket(client: AppClient, tmp_path: Path) -> None:
    remote = make_remote(tmp_path, "octo/app", {"go.mod": "module x\n"})
    created = await register(
        client, "octo/app", remote.url, quota_bytes=10**9, idle_ttl_seconds=7200,
        setup_command="true", tickets=["PROJ-1"],
    )  # fmt: skip
    assert created["effective_quota_bytes"] == 10**9 and created["setup_command"] == "true"
    listed = await (await client.get("/api/repositories", headers=auth_headers())).json()
    assert [repo["full_name"] for repo in listed["repositories"]] == ["octo/app"]
    linked = await client.get("/api/tickets/PROJ-1/repositories", headers=auth_headers())
    assert [repo["id"] for repo in (await linked.json())["repositories"]] == [created["id"]]
    await register(client, "octo/web", make_remote(tmp_path, "octo/web", {}).url)
    put = await client.put(
        "/api/tickets/PROJ-1/repositories",
        json={"repositories": ["octo/app", "octo/web"]},
        headers=auth_headers(),
    )
    assert [repo["full_name"] for repo in (await put.json())["repositories"]] == [
        "octo/app",
        "octo/web",
    ]


async def test_worktrees_are_listed_with_size_and_age_then_deleted(
    start_app: StartApp, settings: Settings, tmp_path: Path
) -> None:
    clock = ManualClock()
    client = await start_app(settings, clock=clock)
    remote = make_remote(tmp_path, "octo/app", {"Makefile": "setup:\n\ttrue\n"})
    registered = await register(client, "octo/app", remote.url)
    repository = await repository_store.get(client.app[SERVICES].db, registered["id"])
    assert repository is not None
    view = await manager_of(client).create_session("PROJ-2", [repository])
    await clock.advance(90)
    listed = await (await client.get("/api/worktrees", headers=auth_headers())).json()
    [session] = listed["worktrees"]
    assert session["id"] == view.id and session["status"] == "ready"
    assert session["age_seconds"] == 90.0 and session["size_bytes"] > 0
    assert session["repositories"][0]["repository"] == "octo/app"
    assert session["repositories"][0]["ports"][1] - session["repositories"][0]["ports"][0] == 9

    deleted = await client.delete(f"/api/worktrees/{view.id}", headers=auth_headers())
    assert (await deleted.json())["worktree"]["status"] == "cleaned"
    assert not Path(view.repos[0].path).exists()
    again = await client.delete(f"/api/worktrees/{view.id}", headers=auth_headers())
    assert again.status == 410
    assert (await (await client.get("/api/worktrees", headers=auth_headers())).json())[
        "worktrees"
    ] == []


async def test_repository_with_live_worktrees_needs_force(
    client: AppClient, tmp_path: Path
) -> None:
    remote = make_remote(tmp_path, "octo/app", {})
    registered = await register(client, "octo/app", remote.url)
    repository = await repository_store.get(client.app[SERVICES].db, registered["id"])
    assert repository is not None
    await manager_of(client).create_session("PROJ-3", [repository], run_setup=False)
    refused = await client.delete(f"/api/repositories/{repository.id}", headers=auth_headers())
    assert refused.status == 409
    forced = await client.delete(
        f"/api/repositories/{repository.id}?force=1", headers=auth_headers()
    )
    assert forced.status == 200
    assert not manager_of(client).mirror_path(repository).exists()
    assert (await (await client.get("/api/repositories", headers=auth_headers())).json())[
        "repositories"
    ] == []


async def test_an_answer_through_the_api_lets_setup_go_on(
    client: AppClient, tmp_path: Path
) -> None:
    remote = make_remote(tmp_path, "octo/odd", {"notes.txt": "nothing to detect\n"})
    registered = await register(client, "octo/odd", remote.url)
    repository = await repository_store.get(client.app[SERVICES].db, registered["id"])
    assert repository is not None
    subscription = client.app[SERVICES].bus.subscribe()
    creating = asyncio.create_task(manager_of(client).create_session("PROJ-4", [repository]))
    while "user_input_request" not in [frame.type for frame in await subscription.next_batch()]:
        pass
    shown = await (await client.get("/api/repositories", headers=auth_headers())).json()
    assert len(shown["repositories"][0]["pending_questions"]) == 1
    answered = await client.post(
        f"/api/repositories/{repository.id}/answers",
        json={"setup_command": "", "test_command": "./run-tests", "answered_by": "carol"},
        headers=auth_headers(),
    )
    assert len((await answered.json())["answered"]) == 1
    view = await asyncio.wait_for(creating, 10)
    assert view.status == "ready"


async def test_merged_pull_request_webhook_cleans_its_worktree(
    client: AppClient, tmp_path: Path
) -> None:
    payload = load_json("github/pull_request/closed.merged.json")
    pull_request = payload["pull_request"]
    remote = make_remote(tmp_path, payload["repository"]["full_name"], {"a.txt": "a\n"})
    remote.commit({"b.txt": "b\n"}, "feature", branch=pull_request["head"]["ref"])
    registered = await register(client, payload["repository"]["full_name"], remote.url)
    repository = await repository_store.get(client.app[SERVICES].db, registered["id"])
    assert repository is not None
    view = await manager_of(client).checkout_pull_request(
        repository,
        pr_number=pull_request["number"],
        head_ref=pull_request["head"]["ref"],
        run_setup=False,
    )
    body = json.dumps(payload).encode()
    response = await client.post(
        "/webhooks/github", data=body, headers=github_headers("pull_request", body)
    )
    assert response.status == 202
    await client.app[DISPATCHER].drain()
    cleaned = await manager_of(client).get(view.id)
    assert cleaned is not None and cleaned.status == "cleaned"
    assert cleaned.session.cleaned_reason == (
        f"pull request merged ({repository.full_name}#{pull_request['number']})"
    )
    assert not Path(view.repos[0].path).exists()
