"""POST /webhooks/jira: verify, store, 202, the same durable path as GitHub's.

Jira signs a webhook that has a secret with `X-Hub-Signature: sha256=<hex>` (HMAC-SHA256 of the
raw body). No JIRA_WEBHOOK_SECRET -> 503; a missing or bad signature -> 401; a body that is not a
JSON object the dispatcher can decode, or has no `webhookEvent` -> 400. The delivery is stored
under source "jira", keyed by `X-Atlassian-Webhook-Identifier` (Jira retries, and may deliver
one event twice), with the payload's `webhookEvent` as the event name; the dispatcher then runs
the `jira` concern. Until the signature matches, the body is read within web/webhook_body.py's
limits.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

import msgspec
from aiohttp import web

from bot.intake import WebhookDelivery
from web.bodies import decode_body_and_text
from web.errors import ApiError
from web.intake import require_decodable, store_delivery
from web.keys import SETTINGS
from web.webhook_body import Refusal, SignedRoute

routes = web.RouteTableDef()

SIGNED = SignedRoute(
    "X-Hub-Signature", "JIRA_WEBHOOK_SECRET", lambda app: app[SETTINGS].jira_webhook_secret
)


class _LoggedFields(msgspec.Struct):
    """The fields of a Jira payload the delivery log keeps; the rest is skipped unread."""

    webhookEvent: Any = None
    issue_event_type_name: Any = None


_EVENT_NAME = re.compile(r"^[A-Za-z0-9_:.-]{1,64}$")
_DELIVERY_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


@routes.post("/webhooks/jira", expect_handler=SIGNED.expect)
async def jira_webhook(request: web.Request) -> web.Response:
    try:
        body = await SIGNED.read(request)
    except Refusal as refusal:
        return await refusal.answer(request)
    fields, payload_text = decode_body_and_text(body, _LoggedFields)
    require_decodable(body)
    event = fields.webhookEvent
    if not isinstance(event, str) or not _EVENT_NAME.match(event):
        raise ApiError(400, "malformed_body", "payload has no valid webhookEvent")
    delivery_id = request.headers.get("X-Atlassian-Webhook-Identifier", "")
    if not delivery_id:
        # Old Jira Server versions send no identifier: the body itself is the identity.
        delivery_id = "sha256-" + hashlib.sha256(body).hexdigest()[:40]
    if not _DELIVERY_ID.match(delivery_id):
        raise ApiError(400, "bad_header", "X-Atlassian-Webhook-Identifier is malformed")
    action = fields.issue_event_type_name
    return await store_delivery(
        request,
        WebhookDelivery(
            source="jira",
            delivery_id=delivery_id,
            event=event,
            action=action if isinstance(action, str) else None,
            installation_id=None,
            payload_text=payload_text,
        ),
    )
