"""GET /pull-requests/{id}: one pull request biagent reviews, from the same read model as
`GET /api/pull-requests/{id}` (bot/reviews/overview.py).

The page shows the review state, the pending batch's due time (counted down by the browser),
each batch with the outcome of each comment in it and the reply biagent posted to it, the
iterations (engine runs: commit, tests, cost), the conversation replies (command answers,
pauses) and the spend, both as the review runs counted it and as the model calls' ledger has
it. The pause, resume and retry buttons post to `/api/pull-requests/{id}/...`, which runs
what the slash commands run. The page follows the stream `pr:<repository>#<number>` and
reloads its state part (`GET /pull-requests/{id}/state`) on each of its events.

Comment bodies, replies and engine reports are reviewers' and agents' text: escaped.
"""

from __future__ import annotations

from typing import Any

import aiohttp_jinja2
from aiohttp import web

from bot.reviews import overview
from bot.reviews.states import BatchStatus
from bot.services import Services
from storage import agent_runs, pull_requests
from web.errors import path_int
from web.keys import SERVICES

routes = web.RouteTableDef()

PAGE = r"/pull-requests/{pr_id:\d+}"
BUSY = frozenset({BatchStatus.RUNNING, BatchStatus.RESPONDING})


def controls_for(pr: dict[str, Any], *, reviews_on: bool) -> list[str]:
    """The buttons the pull request's state offers: what its slash command would do, not
    what it would refuse ("biagent was already paused here")."""
    if not reviews_on or pr["state"] != "open":
        return []
    if pr["paused"]:
        return ["resume"]
    last = pr["last_batch"]
    if last is not None and last["status"] not in BUSY:
        return ["pause", "retry"]
    return ["pause"]


def replies_by_comment(replies: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The reply of each (batch, comment), keyed `<batch>:<comment>` as the template looks it up."""
    return {
        f"{reply['batch_id']}:{reply['comment_id']}": reply
        for reply in replies
        if reply["batch_id"] is not None and reply["comment_id"] is not None
    }


async def state_of(services: Services, pr_id: int) -> dict[str, Any] | None:
    """What the state part (pull_request_state.html) shows; None for an unknown id."""
    pr = await pull_requests.get_pull_request(services.db, pr_id)
    if pr is None:
        return None
    detail = await overview.pull_request_detail(services.db, pr, services.clock.now())
    replies = detail["replies"]
    return {
        "pr": detail,
        "stream": pr.stream,
        "comments": {f"{c['kind']}:{c['id']}": c for c in detail["comments"]},
        "replies": replies_by_comment(replies),
        "conversation": [reply for reply in replies if reply["comment_id"] is None],
        "ledger": await agent_runs.cost_totals(services.db, pr=f"{pr.repository}#{pr.number}"),
        "controls": controls_for(detail, reviews_on=services.reviews is not None),
        "reviews_on": services.reviews is not None,
    }


def _not_found(request: web.Request, pr_id: int) -> web.Response:
    return aiohttp_jinja2.render_template(
        "missing.html",
        request,
        {"what": f"pull request {pr_id}", "back": "/", "back_text": "the dashboard"},
        status=404,
    )


@routes.get(PAGE)
async def pull_request_page(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    pr_id = path_int(request, "pr_id", "pull request id")
    # The event id before the rows: an event in between is replayed and reloads the state.
    epoch, last_id = services.bus.epoch, services.bus.last_id
    state = await state_of(services, pr_id)
    if state is None:
        return _not_found(request, pr_id)
    context = {**state, "epoch": epoch, "last_id": last_id}
    return aiohttp_jinja2.render_template("pull_request.html", request, context)


@routes.get(PAGE + "/state")
async def pull_request_state(request: web.Request) -> web.Response:
    pr_id = path_int(request, "pr_id", "pull request id")
    state = await state_of(request.app[SERVICES], pr_id)
    if state is None:
        return _not_found(request, pr_id)
    return aiohttp_jinja2.render_template("pull_request_state.html", request, state)
