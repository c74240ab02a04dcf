"""Durable webhook intake shared by the GitHub and JIRA endpoints.

A delivery is committed to the delivery log before the 202 leaves (group commit keeps this
fast under load); a redelivery with a known id is a no-op answered 202 too. The bot's
`DeliveryIntake` writes it and wakes the dispatcher to work it in the background.
"""

from __future__ import annotations

import hashlib
import hmac

from aiohttp import web

from bot.intake import WebhookDelivery
from web.keys import INTAKE


def signature_matches(secret: str, body: bytes, header: str | None) -> bool:
    """`sha256=<hex>` HMAC-SHA256 of the raw body, compared in constant time."""
    if not header or not header.startswith("sha256="):
        return False
    expected = hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest().encode()
    presented = header[7:].strip().lower().encode("utf-8", "surrogateescape")
    return hmac.compare_digest(expected, presented)  # bytes: a non-ASCII header is just wrong


async def store_delivery(request: web.Request, delivery: WebhookDelivery) -> web.Response:
    """Accept the delivery (committed before the answer leaves): 202 either way."""
    stored = await request.app[INTAKE].accept(delivery)
    return web.json_response(
        {"delivery_id": delivery.delivery_id, "status": "accepted" if stored else "duplicate"},
        status=202,
    )
