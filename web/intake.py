"""Durable webhook intake shared by the GitHub and JIRA endpoints.

A delivery is committed to the delivery log before the 202 leaves (group commit keeps this
fast under load); a redelivery with a known id is a no-op answered 202 too. The bot's
`DeliveryIntake` writes it and wakes the dispatcher to work it in the background. What is
stored, the dispatcher can decode: a payload its decoder would refuse is a 400 here.
"""

from __future__ import annotations

from aiohttp import web

from bot.intake import WebhookDelivery
from bot.payloads import UndecodablePayload, check_decodable
from web.errors import ApiError
from web.keys import INTAKE


def require_decodable(payload: bytes) -> None:
    """ApiError 400 for a payload (one JSON object in UTF-8) the dispatcher could not decode."""
    try:
        check_decodable(payload)
    except UndecodablePayload as error:
        raise ApiError(400, "malformed_body", str(error)) from None


async def store_delivery(request: web.Request, delivery: WebhookDelivery) -> web.Response:
    """Accept the delivery (committed before the answer leaves): 202 either way."""
    stored = await request.app[INTAKE].accept(delivery)
    return web.json_response(
        {"delivery_id": delivery.delivery_id, "status": "accepted" if stored else "duplicate"},
        status=202,
    )
