"""Durable webhook intake shared by the GitHub and JIRA endpoints.

A delivery is committed to the delivery log before the 202 leaves (group commit keeps this
fast under load); a redelivery with a known id is a no-op answered 202 too. The dispatcher is
woken to work it in the background.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

from aiohttp import web

from storage import deliveries
from web.errors import ApiError
from web.keys import DISPATCHER, SERVICES


def signature_matches(secret: str, body: bytes, header: str | None) -> bool:
    """`sha256=<hex>` HMAC-SHA256 of the raw body, compared in constant time."""
    if not header or not header.startswith("sha256="):
        return False
    expected = hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest().encode()
    presented = header[7:].strip().lower().encode("utf-8", "surrogateescape")
    return hmac.compare_digest(expected, presented)  # bytes: a non-ASCII header is just wrong


def parse_json_object(body: bytes) -> tuple[dict[str, Any], str]:
    """The payload as a dict and as text; ApiError 400 when it is not a JSON object."""
    try:
        text = body.decode("utf-8")
        payload = json.loads(text)
    except (UnicodeDecodeError, ValueError, RecursionError) as error:
        raise ApiError(400, "malformed_body", f"body is not valid JSON: {error}") from None
    if not isinstance(payload, dict):
        raise ApiError(400, "malformed_body", "body must be a JSON object")
    return payload, text


async def store_delivery(
    request: web.Request,
    *,
    source: str,
    delivery_id: str,
    event: str,
    action: str | None,
    installation_id: int | None,
    payload_text: str,
) -> web.Response:
    services = request.app[SERVICES]
    stored = await deliveries.accept(
        services.db,
        source=source,
        delivery_id=delivery_id,
        event=event,
        action=action,
        installation_id=installation_id,
        payload=payload_text,
        now=services.clock.now(),
    )
    if stored:
        request.app[DISPATCHER].wake()
    return web.json_response(
        {"delivery_id": delivery_id, "status": "accepted" if stored else "duplicate"}, status=202
    )
