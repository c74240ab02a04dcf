"""POST /webhooks/github: verify, store, 202 (docs/design.md, Data flow of a webhook).

No secret configured -> 503; missing or bad X-Hub-Signature-256 -> 401; missing event or
delivery headers, a body that is not a JSON object, or one that no handler could work -> 400;
otherwise the delivery is stored (committed) and answered 202, a redelivery included. Until
the signature matches, the body is read within web/webhook_body.py's limits (refused unread,
capped, under a deadline).

The body is decoded into its event's envelope (bot/github/envelope.py): the fields the routers
rely on, typed, so a delivery that could never be dispatched is refused here with 400 naming
the field (`invalid_field`). Only those fields are built into Python objects (web/bodies.py's
`decode_body`): msgspec skips the rest in C. A 30 KB payload then costs about 11 µs instead of
json.loads' 70 µs, which is most of what separated the intake from a bare handler
(bench/webhooks.py); the dispatcher parses the whole payload later, off the request path, and
`require_decodable` (web/intake.py) makes sure it can: an integer literal too long for its
decoder is refused here too.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qs

from aiohttp import web

from bot.github.envelope import Envelope, envelope_for, installation_id
from bot.intake import WebhookDelivery
from web.bodies import decode_body_and_text
from web.errors import ApiError
from web.intake import require_decodable, store_delivery
from web.keys import GITHUB_CONNECTION
from web.webhook_body import Refusal, SignedRoute

routes = web.RouteTableDef()

SIGNED = SignedRoute(
    "X-Hub-Signature-256",
    "GITHUB_WEBHOOK_SECRET",
    lambda app: app[GITHUB_CONNECTION].webhook_secret,  # the environment's, or the App's
)


_EVENT_NAME = re.compile(r"^[a-z_]{1,64}$")
_DELIVERY_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def _json_body(request: web.Request, body: bytes) -> bytes:
    if request.content_type == "application/x-www-form-urlencoded":
        form = parse_qs(body.decode("utf-8", errors="replace"))
        if "payload" not in form:
            raise ApiError(400, "malformed_body", "form body without a payload field")
        return form["payload"][0].encode("utf-8")
    return body


def _envelope(event: str, payload: bytes) -> tuple[Envelope, str]:
    """The event's envelope and the payload as text; ApiError 400 unless it is a JSON object
    that fits the envelope and that the dispatcher can decode again."""
    envelope, payload_text = decode_body_and_text(payload, envelope_for(event))
    require_decodable(payload)
    return envelope, payload_text


@routes.post("/webhooks/github", expect_handler=SIGNED.expect)
async def github_webhook(request: web.Request) -> web.Response:
    try:
        body = await SIGNED.read(request)
    except Refusal as refusal:
        return await refusal.answer(request)
    event = request.headers.get("X-GitHub-Event", "")
    delivery_id = request.headers.get("X-GitHub-Delivery", "")
    if not _EVENT_NAME.match(event):
        raise ApiError(400, "bad_header", "X-GitHub-Event is missing or malformed")
    if not _DELIVERY_ID.match(delivery_id):
        raise ApiError(400, "bad_header", "X-GitHub-Delivery is missing or malformed")
    envelope, payload_text = _envelope(event, _json_body(request, body))
    return await store_delivery(
        request,
        WebhookDelivery(
            source="github",
            delivery_id=delivery_id,
            event=event,
            action=envelope.action,
            installation_id=installation_id(envelope),
            payload_text=payload_text,
        ),
    )
