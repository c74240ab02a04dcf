"""/api/pull-requests: the pull requests biagent watches, their batches, outcomes and spend, and
the pause, resume and retry that the slash commands also offer (bot/reviews/control.py).

An action that the pull request's state does not allow (pausing a paused one, retrying while a
batch runs) changes nothing and is answered 409 `conflicting_state` with the reason.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

import msgspec
from aiohttp import web

from bot.reviews import control, overview
from bot.reviews.service import ReviewService
from storage import pull_requests
from storage.pull_requests import PullRequest
from web.bodies import read_json
from web.errors import ApiError, path_int
from web.keys import SERVICES

routes = web.RouteTableDef()

PULL_REQUEST = r"/api/pull-requests/{id}"
DEFAULT_WHO = "the API"  # a person acting through the API without naming themselves


class ControlBody(msgspec.Struct, forbid_unknown_fields=True):
    """POST /api/pull-requests/{id}/pause|resume|retry (optional): who asked."""

    by: Annotated[str, msgspec.Meta(min_length=1, max_length=200)] | None = None


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


async def _pull_request_or_404(request: web.Request) -> PullRequest:
    pr_id = path_int(request, "id", "pull request id")
    pr = await pull_requests.get_pull_request(request.app[SERVICES].db, pr_id)
    if pr is None:
        raise ApiError(404, "not_found", f"no pull request {pr_id}")
    return pr


@routes.get(PULL_REQUEST)
async def get_pull_request(request: web.Request) -> web.Response:
    pr = await _pull_request_or_404(request)
    services = request.app[SERVICES]
    detail = await overview.pull_request_detail(services.db, pr, services.clock.now())
    return web.json_response({"pull_request": detail})


Action = Callable[[ReviewService, PullRequest, str], Awaitable[control.Answer]]

ACTIONS: dict[str, Action] = {
    "pause": lambda service, pr, by: control.pause(
        service, service.client(pr.installation_id), pr, by=by
    ),
    "resume": lambda service, pr, by: control.resume(service, pr),
    "retry": lambda service, pr, by: control.retry(service, pr),
}


def _control(name: str) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def act(request: web.Request) -> web.Response:
        body = await read_json(request, ControlBody, optional=True)
        services = request.app[SERVICES]
        pr = await _pull_request_or_404(request)
        if services.reviews is None:
            raise ApiError(503, "github_off", "review response needs the GitHub App configured")
        answer = await ACTIONS[name](services.reviews, pr, body.by or DEFAULT_WHO)
        if not answer.changed:
            raise ApiError(409, "conflicting_state", answer.text)
        again = await pull_requests.get_pull_request(services.db, pr.id) or pr
        detail = await overview.pull_request_detail(services.db, again, services.clock.now())
        return web.json_response({"message": answer.text, "pull_request": detail})

    act.__name__ = f"{name}_pull_request"
    return act


for _name in ACTIONS:
    routes.post(f"{PULL_REQUEST}/{_name}")(_control(_name))
