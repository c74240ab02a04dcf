"""/api/repositories and /api/tickets/{key}/repositories: what biagent may check out.

A repository is registered with the `clone_url` GitHub reports (never with credentials in it);
its setup answers, disk quota and idle TTL live on the same record. Handlers stay thin: the
WorktreeManager (bot/worktrees/) does the work.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web

from bot.worktrees.manager import WorktreeBusy, WorktreeManager
from storage import repositories as repository_store
from storage import worktrees as worktree_store
from storage.repositories import Repository
from web.errors import ApiError, path_int
from web.keys import SERVICES

routes = web.RouteTableDef()

FULL_NAME = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")
CLONE_SCHEMES = ("https", "http", "file", "ssh")


def manager_of(request: web.Request) -> WorktreeManager:
    manager = request.app[SERVICES].worktrees
    if manager is None:
        raise ApiError(503, "worktrees_off", "worktrees are not available")
    return manager


async def json_body(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError:
        raise ApiError(400, "bad_json", "the body must be a JSON object") from None
    if not isinstance(body, dict):
        raise ApiError(400, "bad_json", "the body must be a JSON object")
    return body


def _optional(body: dict[str, Any], name: str, kind: type, *, low: int | None = None) -> Any:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, kind) or isinstance(value, bool):
        raise ApiError(400, "bad_parameter", f"{name} must be a {kind.__name__}")
    if low is not None and value < low:
        raise ApiError(400, "bad_parameter", f"{name} must be at least {low}")
    return value


def check_clone_url(clone_url: Any) -> str:
    if not isinstance(clone_url, str) or not clone_url.strip():
        raise ApiError(400, "bad_parameter", "clone_url is required")
    parts = urlsplit(clone_url.strip())
    if parts.scheme not in CLONE_SCHEMES:
        raise ApiError(400, "bad_parameter", f"clone_url must be one of {', '.join(CLONE_SCHEMES)}")
    if parts.password is not None or (parts.username and parts.scheme in ("http", "https")):
        raise ApiError(
            400,
            "credentials_in_url",
            "clone_url must not carry credentials; the installation token is sent per command",
        )
    return clone_url.strip()


async def repository_json(
    request: web.Request, manager: WorktreeManager, repository: Repository
) -> dict[str, Any]:
    db = request.app[SERVICES].db
    live = await worktree_store.live_repos(db, repository_id=repository.id)
    pending = await worktree_store.pending_input_requests(db, repository.id)
    return {
        **repository.as_json(),
        "live_worktrees": len(live),
        "usage_bytes": sum(row.size_bytes or 0 for row in live),
        "effective_quota_bytes": manager.quota_of(repository),
        "effective_idle_ttl_seconds": repository.idle_ttl_seconds or manager.default_idle_ttl_s,
        "pending_questions": [request.as_json() for request in pending],
    }


async def _repository(request: web.Request) -> Repository:
    repository_id = path_int(request, "id", "repository id")
    found = await repository_store.get(request.app[SERVICES].db, repository_id)
    if found is None:
        raise ApiError(404, "not_found", f"no repository {repository_id}")
    return found


@routes.get("/api/repositories")
async def list_repositories(request: web.Request) -> web.Response:
    manager = manager_of(request)
    found = await repository_store.list_all(request.app[SERVICES].db)
    return web.json_response(
        {"repositories": [await repository_json(request, manager, repo) for repo in found]}
    )


@routes.post("/api/repositories")
async def register_repository(request: web.Request) -> web.Response:
    """Register (or update) a repository; setup answers, quota and TTL may come along."""
    manager = manager_of(request)
    services = request.app[SERVICES]
    body = await json_body(request)
    full_name = body.get("full_name")
    if not isinstance(full_name, str) or not FULL_NAME.match(full_name):
        raise ApiError(400, "bad_parameter", "full_name must look like owner/name")
    clone_url = check_clone_url(body.get("clone_url"))
    existed = await repository_store.get_by_name(services.db, full_name) is not None
    repository = await repository_store.upsert(
        services.db,
        full_name=full_name,
        clone_url=clone_url,
        default_branch=_optional(body, "default_branch", str),
        installation_id=_optional(body, "installation_id", int, low=1),
        now=services.clock.now(),
    )
    quota = _optional(body, "quota_bytes", int, low=1)
    ttl = _optional(body, "idle_ttl_seconds", int, low=60)
    if quota is not None or ttl is not None:
        await repository_store.update_settings(
            services.db, repository.id, quota_bytes=quota, idle_ttl_seconds=ttl,
            now=services.clock.now(),
        )  # fmt: skip
    setup = _optional(body, "setup_command", str)
    test = _optional(body, "test_command", str)
    if setup is not None or test is not None:
        await manager.answer_setup(
            repository.id, setup_command=setup, test_command=test, answered_by="api"
        )
    tickets = body.get("tickets") or []
    if not isinstance(tickets, list) or not all(isinstance(key, str) for key in tickets):
        raise ApiError(400, "bad_parameter", "tickets must be a list of ticket keys")
    for ticket_key in tickets:
        linked = [repo.id for repo in await repository_store.for_ticket(services.db, ticket_key)]
        await repository_store.link_ticket(services.db, ticket_key, [*linked, repository.id])
    fresh = await repository_store.get(services.db, repository.id)
    assert fresh is not None
    return web.json_response(
        {"repository": await repository_json(request, manager, fresh)},
        status=200 if existed else 201,
    )


@routes.delete("/api/repositories/{id}")
async def delete_repository(request: web.Request) -> web.Response:
    """Unregister; refused (409) while it has live worktrees unless `?force=1`."""
    manager = manager_of(request)
    repository = await _repository(request)
    try:
        await manager.forget_repository(repository, force=request.query.get("force") == "1")
    except WorktreeBusy as error:
        raise ApiError(409, "in_use", str(error)) from None
    await repository_store.delete(request.app[SERVICES].db, repository.id)
    return web.json_response({"deleted": repository.id})


@routes.post("/api/repositories/{id}/answers")
async def answer_setup(request: web.Request) -> web.Response:
    """A person's answer to a setup question: stored per repository, waiting setups go on."""
    manager = manager_of(request)
    repository = await _repository(request)
    body = await json_body(request)
    setup = _optional(body, "setup_command", str)
    test = _optional(body, "test_command", str)
    if setup is None and test is None:
        raise ApiError(400, "bad_parameter", "give setup_command (may be empty) or test_command")
    answered_by = _optional(body, "answered_by", str) or "api"
    answered = await manager.answer_setup(
        repository.id, setup_command=setup, test_command=test, answered_by=answered_by
    )
    fresh = await repository_store.get(request.app[SERVICES].db, repository.id)
    assert fresh is not None
    return web.json_response(
        {"repository": await repository_json(request, manager, fresh), "answered": answered}
    )


@routes.get("/api/tickets/{key}/repositories")
async def ticket_repositories(request: web.Request) -> web.Response:
    manager = manager_of(request)
    services = request.app[SERVICES]
    ticket_key = request.match_info["key"]
    linked = await repository_store.for_ticket(services.db, ticket_key)
    names = {repo.id: repo.full_name for repo in await repository_store.list_all(services.db)}
    now = services.clock.now()
    sessions = [
        manager.session_json(view, names, now=now)
        for view in await manager.list_sessions()
        if view.session.owner == ticket_key
    ]
    return web.json_response(
        {
            "ticket": ticket_key,
            "repositories": [await repository_json(request, manager, repo) for repo in linked],
            "worktree_sessions": sessions,
        }
    )


@routes.put("/api/tickets/{key}/repositories")
async def link_ticket_repositories(request: web.Request) -> web.Response:
    """Set which registered repositories a ticket's work touches: {"repositories": [names]}."""
    manager = manager_of(request)
    services = request.app[SERVICES]
    body = await json_body(request)
    names = body.get("repositories")
    if not isinstance(names, list) or not all(isinstance(name, str) for name in names):
        raise ApiError(400, "bad_parameter", "repositories must be a list of owner/name")
    ids = []
    for name in names:
        found = await repository_store.get_by_name(services.db, name)
        if found is None:
            raise ApiError(404, "not_found", f"{name} is not registered")
        ids.append(found.id)
    ticket_key = request.match_info["key"]
    await repository_store.link_ticket(services.db, ticket_key, ids)
    linked = await repository_store.for_ticket(services.db, ticket_key)
    return web.json_response(
        {
            "ticket": ticket_key,
            "repositories": [await repository_json(request, manager, repo) for repo in linked],
        }
    )
