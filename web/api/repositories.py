"""/api/repositories and /api/tickets/{key}/repositories: what biagent may check out.

A repository is registered with the `clone_url` GitHub reports (never with credentials in it);
its setup answers, disk quota and idle TTL live on the same record. Handlers stay thin: the
WorktreeManager (bot/worktrees/) does the work.
"""

from __future__ import annotations

import functools
from typing import Annotated, Any
from urllib.parse import urlsplit

import msgspec
from aiohttp import web

from bot.repositories import Registration, UnknownRepository
from bot.worktrees.manager import WorktreeBusy, WorktreeManager
from storage import repositories as repository_store
from storage import worktrees as worktree_store
from storage.repositories import Repository
from web.bodies import RowId, read_json
from web.errors import DB_INT_MAX, ApiError, path_int
from web.features import repositories_of, worktrees_of
from web.keys import SERVICES

routes = web.RouteTableDef()

FULL_NAME = r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$"
CLONE_SCHEMES = ("https", "http", "file", "ssh")
# The codes these routes answered before web/bodies.py: clients know them.
read_body = functools.partial(read_json, malformed="bad_json", invalid="bad_parameter")


class RegisterBody(msgspec.Struct):
    """POST /api/repositories."""

    full_name: Annotated[str, msgspec.Meta(pattern=FULL_NAME)]
    clone_url: str
    default_branch: str | None = None
    installation_id: RowId | None = None
    quota_bytes: RowId | None = None
    idle_ttl_seconds: Annotated[int, msgspec.Meta(ge=60, le=DB_INT_MAX)] | None = None
    setup_command: str | None = None
    test_command: str | None = None
    tickets: list[str] | None = None


class AnswerBody(msgspec.Struct):
    """POST /api/repositories/{id}/answers."""

    setup_command: str | None = None
    test_command: str | None = None
    answered_by: str | None = None


class LinkBody(msgspec.Struct):
    """PUT /api/tickets/{key}/repositories."""

    repositories: list[str]


def check_clone_url(clone_url: str) -> str:
    if not clone_url.strip():
        raise ApiError(400, "bad_parameter", "clone_url is required")
    try:
        parts = urlsplit(clone_url.strip())
    except ValueError:  # "https://[::1": a bracketed host that is no IP address
        raise ApiError(400, "bad_parameter", "clone_url is not a URL") from None
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
        "pending_questions": [question.as_json() for question in pending],
    }


async def _repository(request: web.Request) -> Repository:
    repository_id = path_int(request, "id", "repository id")
    found = await repository_store.get(request.app[SERVICES].db, repository_id)
    if found is None:
        raise ApiError(404, "not_found", f"no repository {repository_id}")
    return found


@routes.get("/api/repositories")
async def list_repositories(request: web.Request) -> web.Response:
    manager = worktrees_of(request)
    found = await repository_store.list_all(request.app[SERVICES].db)
    return web.json_response(
        {"repositories": [await repository_json(request, manager, repo) for repo in found]}
    )


@routes.post("/api/repositories")
async def register_repository(request: web.Request) -> web.Response:
    """Register (or update) a repository; setup answers, quota and TTL may come along."""
    manager = worktrees_of(request)
    body = await read_body(request, RegisterBody)
    repository, created = await repositories_of(request).register(
        Registration(
            full_name=body.full_name,
            clone_url=check_clone_url(body.clone_url),
            default_branch=body.default_branch,
            installation_id=body.installation_id,
            quota_bytes=body.quota_bytes,
            idle_ttl_seconds=body.idle_ttl_seconds,
            setup_command=body.setup_command,
            test_command=body.test_command,
            tickets=body.tickets or (),
        )
    )
    return web.json_response(
        {"repository": await repository_json(request, manager, repository)},
        status=201 if created else 200,
    )


@routes.delete("/api/repositories/{id}")
async def delete_repository(request: web.Request) -> web.Response:
    """Unregister; refused (409) while it has live worktrees unless `?force=1`."""
    registry = repositories_of(request)
    repository = await _repository(request)
    try:
        await registry.unregister(repository, force=request.query.get("force") == "1")
    except WorktreeBusy as error:
        raise ApiError(409, "in_use", str(error)) from None
    return web.json_response({"deleted": repository.id})


@routes.post("/api/repositories/{id}/answers")
async def answer_setup(request: web.Request) -> web.Response:
    """A person's answer to a setup question: stored per repository, waiting setups go on."""
    manager = worktrees_of(request)
    repository = await _repository(request)
    body = await read_body(request, AnswerBody)
    if body.setup_command is None and body.test_command is None:
        raise ApiError(400, "bad_parameter", "give setup_command (may be empty) or test_command")
    answered = await manager.answer_setup(
        repository.id,
        setup_command=body.setup_command,
        test_command=body.test_command,
        answered_by=body.answered_by or "api",
    )
    fresh = await repositories_of(request).reread(repository)
    return web.json_response(
        {"repository": await repository_json(request, manager, fresh), "answered": answered}
    )


@routes.get("/api/tickets/{key}/repositories")
async def ticket_repositories(request: web.Request) -> web.Response:
    manager = worktrees_of(request)
    services = request.app[SERVICES]
    ticket_key = request.match_info["key"]
    linked = await repository_store.for_ticket(services.db, ticket_key)
    names = {repo.id: repo.full_name for repo in await repository_store.list_all(services.db)}
    now = services.clock.now()
    sessions = [
        manager.session_json(view, names, now=now)
        for view in await manager.list_sessions(anywhere=True)
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
    manager = worktrees_of(request)
    body = await read_body(request, LinkBody)
    ticket_key = request.match_info["key"]
    try:
        linked = await repositories_of(request).link_ticket(ticket_key, body.repositories)
    except UnknownRepository as error:
        raise ApiError(404, "not_found", str(error)) from None
    return web.json_response(
        {
            "ticket": ticket_key,
            "repositories": [await repository_json(request, manager, repo) for repo in linked],
        }
    )
