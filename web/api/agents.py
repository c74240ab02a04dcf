"""Agent routes: token catch-up for reconnecting clients, clarifications, costs.

- `GET /api/streams/{stream}/tokens?after=N`: the `token_catchup` of a stream, the text of every
  kept token frame after seq N (the stream name URL-encoded: `pr%3Aocto%2Frepo%2312`), and its
  latest block's first seq, state and last seq (`block`, null when none is kept).
- `GET /api/clarifications?status=open|answered`: questions agents asked.
- `POST /api/clarifications/{id}/answer` with `{"answer": "...", "answered_by": "..."}`: store
  the answer and publish clarification_answered; the step's owner resumes the step.
- `GET /api/agent-costs?pr=octo/repo%2312` (or `pipeline_id=N`): tokens and dollars spent.
"""

from __future__ import annotations

import msgspec
from aiohttp import web

from bot.agents.clarifications import ClarificationError, answer_clarification
from bot.agents.tokens import token_catchup
from storage import agent_runs, clarifications
from web.bodies import read_json
from web.errors import ApiError, path_int, query_int
from web.keys import SERVICES

routes = web.RouteTableDef()

CLARIFICATION_ERRORS = {
    "not_found": 404,
    "already_answered": 409,
    "empty_answer": 400,
    "invalid_choice": 400,
}


class AnswerBody(msgspec.Struct):
    """POST /api/clarifications/{id}/answer."""

    answer: str
    answered_by: str | None = None


@routes.get(r"/api/streams/{stream:.+}/tokens")
async def stream_tokens(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    stream = request.match_info["stream"]
    after = query_int(request, "after", 0, low=0, high=2**62)
    catchup = await token_catchup(services.db, services.clock, stream, after)
    return web.json_response(
        {
            "type": "token_catchup",
            "stream": stream,
            "data": catchup.data(),
            "frames": catchup.frames,
            "block": catchup.block_json(),
        }
    )


@routes.get("/api/clarifications")
async def list_clarifications(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    status = request.query.get("status") or None
    if status not in (None, "open", "answered"):
        raise ApiError(400, "bad_parameter", "status must be open or answered")
    limit = query_int(request, "limit", 200, low=1, high=1000)
    found = await clarifications.listed(services.db, status=status, limit=limit)
    return web.json_response({"clarifications": [item.as_json() for item in found]})


@routes.post(r"/api/clarifications/{clarification_id:\d+}/answer")
async def answer(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    # The codes this route answered before web/bodies.py: clients know them.
    body = await read_json(request, AnswerBody, malformed="bad_json", invalid="bad_parameter")
    try:
        answered = await answer_clarification(
            services.db,
            services.bus,
            services.clock,
            path_int(request, "clarification_id", "clarification id"),
            body.answer,
            answered_by=body.answered_by,
        )
    except ClarificationError as error:
        raise ApiError(CLARIFICATION_ERRORS[error.code], error.code, str(error)) from None
    if services.pipelines is not None:  # a pipeline's step that asked goes on
        await services.pipelines.clarification_answered(answered)
    return web.json_response(answered.as_json())


@routes.get("/api/agent-costs")
async def agent_costs(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    pr = request.query.get("pr") or None
    pipeline_id = request.query.get("pipeline_id") or None
    if (pr is None) == (pipeline_id is None):
        raise ApiError(400, "bad_parameter", "give one of pr or pipeline_id")
    if pr is not None:
        totals = await agent_runs.cost_totals(services.db, pr=pr)
    else:
        totals = await agent_runs.cost_totals(
            services.db, pipeline_id=query_int(request, "pipeline_id", 0, low=0, high=2**62)
        )
    return web.json_response(
        {
            "calls": totals.calls,
            "input_tokens": totals.input_tokens,
            "output_tokens": totals.output_tokens,
            "cache_write_tokens": totals.cache_write_tokens,
            "cache_read_tokens": totals.cache_read_tokens,
            "cost_usd": round(totals.cost_usd, 6),
        }
    )
