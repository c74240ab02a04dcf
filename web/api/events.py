"""/api/events?since=N: the event log after N, for clients that poll instead of streaming."""

from __future__ import annotations

from aiohttp import web

from storage import events as event_store
from web.errors import ApiError, query_int
from web.keys import SERVICES

routes = web.RouteTableDef()


@routes.get("/api/events")
async def list_events(request: web.Request) -> web.Response:
    bus = request.app[SERVICES].bus
    floor = await event_store.history_floor(bus.db)
    # Without `since` nothing is being resumed: the answer starts at the oldest event kept.
    since = query_int(request, "since", floor, low=0, high=2**62)
    limit = query_int(request, "limit", 500, low=1, high=5000)
    streams = [s for s in request.query.get("stream", "").split(",") if s] or None
    epoch = request.query.get("epoch")
    newest = bus.last_id if since <= bus.last_id else await bus.newest_id()
    if (epoch and epoch != bus.epoch) or since > newest or since < floor:
        raise ApiError(
            410,
            "resync_required",
            f"events after {since} cannot all be served (epoch {bus.epoch}, "
            f"kept from {floor + 1}, newest {newest}): reload and resume from last_id",
            extra={"epoch": bus.epoch, "last_id": newest, "floor": floor},
        )
    found = await event_store.read_since(bus.db, since, streams=streams, limit=limit)
    return web.json_response(
        {
            "epoch": bus.epoch,
            "last_id": max(newest, found[-1].id if found else 0),
            "events": [stored.envelope() for stored in found],
        }
    )
