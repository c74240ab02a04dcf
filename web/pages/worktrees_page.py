"""GET /worktrees: the worktree sessions with their size, age and idle time, and a delete
button each (`DELETE /api/worktrees/{id}`, the API's own rules: a session a running job holds
needs the force box). `?all=1` shows the cleaned ones too; `?measure=1` measures the sizes
first (a walk of each worktree on disk), as `GET /api/worktrees` does.
"""

from __future__ import annotations

from typing import Any

import aiohttp_jinja2
from aiohttp import web

from storage import repositories
from web.keys import SERVICES

routes = web.RouteTableDef()


@routes.get("/worktrees")
@aiohttp_jinja2.template("worktrees.html")
async def worktrees_page(request: web.Request) -> dict[str, Any]:
    services = request.app[SERVICES]
    manager = services.worktrees
    show_all = request.query.get("all") == "1"
    if manager is None:
        return {"enabled": False, "sessions": [], "show_all": show_all, "total_bytes": 0}
    if request.query.get("measure") == "1":
        await manager.measure()
    views = await manager.list_sessions(live_only=not show_all, anywhere=True)
    names = {repo.id: repo.full_name for repo in await repositories.list_all(services.db)}
    now = services.clock.now()
    sessions = [manager.session_json(view, names, now=now) for view in views]
    return {
        "enabled": True,
        "sessions": sessions,
        "show_all": show_all,
        "total_bytes": sum(session["size_bytes"] for session in sessions),
    }
