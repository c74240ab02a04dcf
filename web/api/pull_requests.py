"""/api/pull-requests: the pull requests biagent watches, their batches, outcomes and spend."""

from __future__ import annotations

from aiohttp import web

from bot.reviews import overview
from storage import pull_requests
from web.errors import ApiError, path_int
from web.keys import SERVICES

routes = web.RouteTableDef()


@routes.get("/api/pull-requests")
async def list_pull_requests(request: web.Request) -> web.Response:
    state = request.query.get("state", "all")
    if state not in ("open", "all"):
        raise ApiError(400, "bad_parameter", "state must be open or all")
    services = request.app[SERVICES]
    rows = await overview.list_pull_requests(
        services.db, services.clock.now(), open_only=state == "open"
    )
    return web.json_response({"pull_requests": rows})


@routes.get("/api/pull-requests/{id}")
async def get_pull_request(request: web.Request) -> web.Response:
    pr_id = path_int(request, "id", "pull request id")
    services = request.app[SERVICES]
    pr = await pull_requests.get_pull_request(services.db, pr_id)
    if pr is None:
        raise ApiError(404, "not_found", f"no pull request {pr_id}")
    detail = await overview.pull_request_detail(services.db, pr, services.clock.now())
    return web.json_response({"pull_request": detail})
