"""/api/pipelines: ticket pipelines made, read and driven (docs/pipelines.md, README: API).

- `POST /api/pipelines {"ticket", "repository"?, "cycle_type"?, "start"?}` -> 201 `{"pipeline"}`
- `GET /api/pipelines?status=&ticket=` -> `{"pipelines": [...]}`; `GET /api/pipelines/{id}`
- `GET /api/pipelines/{id}/diff` -> `{"diff"}`: what its steps changed (bot/pipelines/diffs.py)
- `POST /api/pipelines/{id}/start|pause|resume|cancel`, `PUT /api/pipelines/{id}/cycle-type`
- `POST /api/pipelines/{id}/steps/{step_id}/restart|feedback|approve`
- `POST /api/pipelines/{id}/risks/{risk_id}/acknowledge`

The work is in bot/pipelines/; an action that does not fit the state is 409 `conflicting_state`
with the state named (`"state"` beside the error).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

import msgspec
from aiohttp import web

from bot.pipelines.creation import InvalidPipelineRequest
from bot.pipelines.diffs import pipeline_diff
from bot.pipelines.engine import ConflictingState, PipelineNotFound
from bot.pipelines.states import PipelineStatus
from bot.pipelines.views import detail_of, summary_of
from storage import pipelines as pipeline_rows
from storage.pipelines import Pipeline
from web.bodies import read_json
from web.errors import ApiError, path_int, query_int
from web.features import pipelines_of
from web.keys import SERVICES

routes = web.RouteTableDef()

PIPELINE = r"/api/pipelines/{pipeline_id:\d+}"
STEP = PIPELINE + r"/steps/{step_id:\d+}"
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
Who = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
Note = Annotated[str, msgspec.Meta(max_length=5000)]
Dollars = Annotated[float, msgspec.Meta(gt=0, le=100_000)]
DEFAULT_WHO = "api"  # a person driving through the API without naming themselves


class CreateBody(msgspec.Struct, forbid_unknown_fields=True):
    ticket: Annotated[str, msgspec.Meta(pattern=r"^[A-Z][A-Z0-9_]{0,49}-[0-9]{1,12}$")]
    repository: Name | None = None
    cycle_type: Name | None = None
    start: bool = True
    created_by: Who | None = None


class CycleTypeBody(msgspec.Struct, forbid_unknown_fields=True):
    cycle_type: Name
    by: Who | None = None


class RestartBody(msgspec.Struct, forbid_unknown_fields=True):
    from_here: bool = False


class FeedbackBody(msgspec.Struct, forbid_unknown_fields=True):
    text: Annotated[str, msgspec.Meta(min_length=1, max_length=20_000)]
    by: Who | None = None


class ApproveBody(msgspec.Struct, forbid_unknown_fields=True):
    approved_by: Who | None = None
    by: Who | None = None
    note: Note | None = None


class AcknowledgeBody(msgspec.Struct, forbid_unknown_fields=True):
    acknowledged_by: Who | None = None
    by: Who | None = None
    note: Note | None = None


class ActionBody(msgspec.Struct, forbid_unknown_fields=True):
    reason: Note | None = None
    # resume only: the pipeline's and the failed step's new dollar caps (a budget failure goes
    # on after a raise)
    max_cost_usd: Dollars | None = None
    step_max_cost_usd: Dollars | None = None


async def answered(
    request: web.Request, action: Awaitable[Pipeline], status: int = 200
) -> web.Response:
    """The pipeline after `action`, with the engine's errors as API errors."""
    try:
        pipeline = await action
    except PipelineNotFound as error:
        raise ApiError(404, "not_found", str(error)) from None
    except InvalidPipelineRequest as error:
        raise ApiError(400, "invalid_pipeline", str(error)) from None
    except ConflictingState as error:
        raise ApiError(409, "conflicting_state", str(error), extra={"state": error.state}) from None
    view = await detail_of(request.app[SERVICES].db, pipeline)
    return web.Response(
        body=msgspec.json.encode({"pipeline": view}), status=status, content_type="application/json"
    )


@routes.post("/api/pipelines")
async def create_pipeline(request: web.Request) -> web.Response:
    body = await read_json(request, CreateBody)
    creation = pipelines_of(request).creation.create(
        ticket_key=body.ticket,
        repository=body.repository,
        cycle_type=body.cycle_type,
        start=body.start,
        trigger="api",
        by=body.created_by,
    )
    return await answered(request, creation, status=201)


@routes.get("/api/pipelines")
async def list_pipelines(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    statuses = [s for s in request.query.getall("status", []) for s in s.split(",") if s]
    unknown = [s for s in statuses if s not in PipelineStatus.__members__.values()]
    if unknown:
        known = ", ".join(PipelineStatus)
        raise ApiError(400, "bad_parameter", f"unknown status {unknown[0]!r}: one of {known}")
    ticket = request.query.get("ticket") or None
    limit = query_int(request, "limit", 200, low=1, high=1000)
    found = await pipeline_rows.list_pipelines(
        services.db, statuses=statuses, ticket_key=ticket, limit=limit
    )
    body = {"pipelines": [summary_of(pipeline) for pipeline in found]}
    return web.Response(body=msgspec.json.encode(body), content_type="application/json")


def _pipeline_id(request: web.Request) -> int:
    return path_int(request, "pipeline_id", "pipeline id")


@routes.get(PIPELINE)
async def get_pipeline(request: web.Request) -> web.Response:
    return await answered(request, pipelines_of(request).engine.get(_pipeline_id(request)))


@routes.get(PIPELINE + "/diff")
async def get_diff(request: web.Request) -> web.Response:
    """Per repository of the pipeline's worktrees, each changed file and its patch (bounded)."""
    db, pipeline_id = request.app[SERVICES].db, _pipeline_id(request)
    if await pipeline_rows.get_pipeline(db, pipeline_id) is None:
        raise ApiError(404, "not_found", f"no pipeline {pipeline_id}")
    diff = await pipeline_diff(db, pipeline_id)
    return web.Response(body=msgspec.json.encode({"diff": diff}), content_type="application/json")


@routes.put(PIPELINE + "/cycle-type")
async def choose_cycle_type(request: web.Request) -> web.Response:
    """A person overrides the cycle type before the start."""
    body = await read_json(request, CycleTypeBody)
    chosen = pipelines_of(request).creation.choose_cycle_type(
        _pipeline_id(request), body.cycle_type, reason=f"chosen by {body.by or DEFAULT_WHO}"
    )
    return await answered(request, chosen)


def _lifecycle(name: str) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def act(request: web.Request) -> web.Response:
        body = await read_json(request, ActionBody, optional=True)
        if name != "resume" and (body.max_cost_usd or body.step_max_cost_usd):
            raise ApiError(400, "invalid_field", f"caps are raised by resume, not by {name}")
        engine = pipelines_of(request).engine
        pipeline_id = _pipeline_id(request)
        actions = {
            "start": lambda: engine.start(pipeline_id),
            "pause": lambda: engine.pause(pipeline_id, body.reason),
            "resume": lambda: engine.resume(
                pipeline_id,
                max_cost_usd=body.max_cost_usd,
                step_max_cost_usd=body.step_max_cost_usd,
            ),
            "cancel": lambda: engine.cancel(pipeline_id, body.reason),
        }
        return await answered(request, actions[name]())

    act.__name__ = f"{name}_pipeline"
    return act


for _name in ("start", "pause", "resume", "cancel"):
    routes.post(f"{PIPELINE}/{_name}")(_lifecycle(_name))


def _step_id(request: web.Request) -> int:
    return path_int(request, "step_id", "step id")


@routes.post(STEP + "/restart")
async def restart_step(request: web.Request) -> web.Response:
    body = await read_json(request, RestartBody, optional=True)
    actions = pipelines_of(request).actions
    restarted = actions.restart_step(
        _pipeline_id(request), _step_id(request), from_here=body.from_here
    )
    return await answered(request, restarted)


@routes.post(STEP + "/feedback")
async def feedback(request: web.Request) -> web.Response:
    body = await read_json(request, FeedbackBody)
    if not body.text.strip():
        raise ApiError(400, "invalid_field", "text: the feedback is empty")
    actions = pipelines_of(request).actions
    given = actions.feedback(_pipeline_id(request), _step_id(request), text=body.text, by=body.by)
    return await answered(request, given)


@routes.post(STEP + "/approve")
async def approve(request: web.Request) -> web.Response:
    body = await read_json(request, ApproveBody, optional=True)
    actions = pipelines_of(request).actions
    approval = actions.approve(
        _pipeline_id(request),
        _step_id(request),
        by=body.approved_by or body.by or DEFAULT_WHO,
        note=body.note,
    )
    return await answered(request, approval)


@routes.post(PIPELINE + r"/risks/{risk_id:\d+}/acknowledge")
async def acknowledge_risk(request: web.Request) -> web.Response:
    body = await read_json(request, AcknowledgeBody, optional=True)
    actions = pipelines_of(request).actions
    acknowledged = actions.acknowledge_risk(
        _pipeline_id(request),
        path_int(request, "risk_id", "risk id"),
        by=body.acknowledged_by or body.by or DEFAULT_WHO,
        note=body.note,
    )
    return await answered(request, acknowledged)
