"""/api/deliveries: the delivery log, filterable by status, and redelivery of one delivery.

The log is read newest first, a page at a time: each answer's `next` is the `before` of the
page after it (None on the last page), so a client walks the whole log, however long.
"""

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
    before = query_int(request, "before", 0, low=1, high=2**63 - 1) or None
    db = request.app[SERVICES].db
    # One more than asked tells whether an older page exists, without a count.
    found = await deliveries.list_recent(
        db, status=status, source=source, before=before, limit=limit + 1
    )
    page = found[:limit]
    return web.json_response(
        {
            "deliveries": [delivery.as_json() for delivery in page],
            "counts": await deliveries.count_by_status(db),
            "next": page[-1].id if len(found) > limit else None,
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
