"""/api/worktrees: the worktree sessions (status, size, age) and their removal.

The list shows every instance's sessions, each naming its `instance`; a session is removed by
the instance whose disk holds it (docs/deploy.md, Local disk): another one answers 409."""

from __future__ import annotations

from aiohttp import web

from storage import repositories as repository_store
from web.errors import ApiError
from web.features import worktrees_of
from web.keys import SERVICES

routes = web.RouteTableDef()


@routes.get("/api/worktrees")
async def list_worktrees(request: web.Request) -> web.Response:
    """Live sessions (`?all=1` adds the cleaned ones); `?measure=1` measures sizes first."""
    manager = worktrees_of(request)
    services = request.app[SERVICES]
    if request.query.get("measure") == "1":
        await manager.measure()
    views = await manager.list_sessions(live_only=request.query.get("all") != "1", anywhere=True)
    names = {repo.id: repo.full_name for repo in await repository_store.list_all(services.db)}
    now = services.clock.now()
    sessions = [manager.session_json(view, names, now=now) for view in views]
    return web.json_response(
        {
            "worktrees": sessions,
            "total_size_bytes": sum(session["size_bytes"] for session in sessions),
        }
    )


@routes.delete("/api/worktrees/{id}")
async def delete_worktree(request: web.Request) -> web.Response:
    """Clean a session now; a session held by a running job needs `?force=1`."""
    manager = worktrees_of(request)
    session_id = request.match_info["id"]
    view = await manager.get(session_id, anywhere=True)
    if view is None:
        raise ApiError(404, "not_found", f"no worktree session {session_id}")
    if view.session.instance_id != manager.views.instance_id:
        raise ApiError(
            409,
            "other_instance",
            f"session {session_id} is on the disk of instance {view.session.instance_id}:"
            " its sweeps remove it (idle, merged), or that instance's API does",
        )
    if view.status == "cleaned":
        raise ApiError(410, "gone", f"session {session_id} was already cleaned")
    force = request.query.get("force") == "1"
    if view.session.held_by is not None and not force:
        raise ApiError(
            409, "in_use", f"session {session_id} is held by {view.session.held_by}; ?force=1"
        )
    await manager.cleanup_session(session_id, "deleted through the API", force=force)
    again = await manager.get(session_id)
    if again is None:  # the repository was unregistered meanwhile, its records with it
        raise ApiError(410, "gone", f"session {session_id} is gone")
    names = {
        repo.id: repo.full_name
        for repo in await repository_store.list_all(request.app[SERVICES].db)
    }
    return web.json_response(
        {"worktree": manager.session_json(again, names, now=request.app[SERVICES].clock.now())}
    )
