"""/api/cycle-types: the pipelines' cycle types and their ordered phases, read and edited.

`PUT /api/cycle-types/{name}` replaces a cycle type's phases (or adds a new cycle type); the
checks live in bot/pipelines/cycle_type_service.py and every problem comes back in one 400
(`invalid_cycle_type`). Editing a cycle type never changes a pipeline already created.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from aiohttp import web

from bot.pipelines.cycle_type_service import CycleTypeEdit, InvalidCycleType
from storage.cycle_types import CycleType, PhaseChoice
from web.bodies import read_json
from web.errors import ApiError
from web.features import cycle_types_of

routes = web.RouteTableDef()

NAME = r"{name:[A-Za-z0-9_]{1,64}}"
Dollars = Annotated[float, msgspec.Meta(gt=0, le=10_000)]
Seconds = Annotated[int, msgspec.Meta(ge=1, le=86_400)]


class PhaseBody(msgspec.Struct, forbid_unknown_fields=True):
    phase: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    gate: str | None = None
    max_cost_usd: Dollars | None = None
    time_limit_s: Seconds | None = None


class CycleTypeBody(msgspec.Struct, forbid_unknown_fields=True):
    """PUT /api/cycle-types/{name}."""

    phases: list[PhaseBody]
    description: Annotated[str, msgspec.Meta(max_length=2000)] = ""
    max_cost_usd: Dollars | None = None
    step_max_cost_usd: Dollars | None = None


def cycle_type_json(cycle_type: CycleType) -> dict[str, Any]:
    return {
        "name": cycle_type.name,
        "description": cycle_type.description,
        "max_cost_usd": cycle_type.max_cost_usd,
        "step_max_cost_usd": cycle_type.step_max_cost_usd,
        "phases": [
            {
                "position": cycle_phase.position,
                "phase": cycle_phase.phase.name,
                "agent": cycle_phase.phase.agent,
                "gate": cycle_phase.gate,
                "tools": list(cycle_phase.phase.tools) if cycle_phase.phase.tools else None,
                "artifact_kind": cycle_phase.phase.artifact_kind,
                "max_cost_usd": cycle_phase.max_cost_usd,
                "time_limit_s": cycle_phase.time_limit_s,
            }
            for cycle_phase in cycle_type.phases
        ],
    }


@routes.get("/api/cycle-types")
async def list_cycle_types(request: web.Request) -> web.Response:
    listed = await cycle_types_of(request).list()
    return web.json_response({"cycle_types": [cycle_type_json(found) for found in listed]})


@routes.get(f"/api/cycle-types/{NAME}")
async def get_cycle_type(request: web.Request) -> web.Response:
    found = await cycle_types_of(request).get(request.match_info["name"])
    if found is None:
        raise ApiError(404, "not_found", f"no cycle type {request.match_info['name']!r}")
    return web.json_response({"cycle_type": cycle_type_json(found)})


@routes.put(f"/api/cycle-types/{NAME}")
async def put_cycle_type(request: web.Request) -> web.Response:
    body = await read_json(request, CycleTypeBody)
    edit = CycleTypeEdit(
        description=body.description,
        max_cost_usd=body.max_cost_usd,
        step_max_cost_usd=body.step_max_cost_usd,
        phases=tuple(
            PhaseChoice(phase.phase, phase.gate, phase.max_cost_usd, phase.time_limit_s)
            for phase in body.phases
        ),
    )
    try:
        saved = await cycle_types_of(request).save(request.match_info["name"], edit)
    except InvalidCycleType as invalid:
        raise ApiError(400, "invalid_cycle_type", "; ".join(invalid.problems)) from None
    return web.json_response({"cycle_type": cycle_type_json(saved)})
