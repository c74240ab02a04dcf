"""/api/deliveries: the delivery log, filterable by status, and redelivery of one delivery."""

from __future__ import annotations

from aiohttp import web

from bot.intake import DeliveryBusy
from storage import deliveries
from web.errors import ApiError, path_int, query_int
from web.keys import INTAKE, SERVICES

routes = web.RouteTableDef()


@routes.get("/api/deliveries")
async def list_deliveries(request: web.Request) -> web.Response:
    status = request.query.get("status") or None
    if status is not None and status not in deliveries.STATUSES:
        raise ApiError(
            400, "bad_parameter", f"status must be one of {', '.join(deliveries.STATUSES)}"
        )
    source = request.query.get("source") or None
    limit = query_int(request, "limit", 50, low=1, high=1000)
    db = request.app[SERVICES].db
    found = await deliveries.list_recent(db, status=status, source=source, limit=limit)
    return web.json_response(
        {
            "deliveries": [delivery.as_json() for delivery in found],
            "counts": await deliveries.count_by_status(db),
        }
    )


@routes.post("/api/deliveries/{id}/redeliver")
async def redeliver(request: web.Request) -> web.Response:
    delivery_pk = path_int(request, "id", "delivery id")
    try:
        again = await request.app[INTAKE].redeliver(delivery_pk)
    except DeliveryBusy as busy:
        raise ApiError(409, "busy", str(busy)) from None
    if again is None:
        raise ApiError(404, "not_found", f"no delivery {delivery_pk}")
    return web.json_response({"delivery": again.as_json()}, status=202)
