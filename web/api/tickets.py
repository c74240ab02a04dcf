"""/api/tickets: the JIRA mirror (list, one ticket, related), its stats, a manual sync, and
the attachment proxy.

Reads come from the local mirror; only the sync and the attachment proxy talk to Jira. An
attachment is streamed from Jira to the client in small chunks (never whole in memory), always
as a download (`Content-Disposition: attachment`, `nosniff`, a sandbox CSP): an HTML or SVG
attachment must not run as a page of this origin, where the API cookie lives.
"""

from __future__ import annotations

import logging
import re
from typing import Any
from urllib.parse import quote

import msgspec
from aiohttp import web

from bot.jira.client import JiraError
from bot.jira.related import related_of
from bot.jira.sync import SyncAlreadyRunning
from storage import jira_sync, tickets
from web.bodies import read_json
from web.errors import ApiError, query_int
from web.features import jira_of
from web.keys import SERVICES

log = logging.getLogger(__name__)

routes = web.RouteTableDef()

KEY_PATTERN = r"[A-Za-z][A-Za-z0-9_]*-[0-9]+"
_MIME = re.compile(r"^[\w.+-]+/[\w.+-]+$")


def _filter(request: web.Request) -> tickets.TicketFilter:
    query = request.query

    def text(name: str) -> str | None:
        value = query.get(name, "").strip()
        return value or None

    project = text("project")
    return tickets.TicketFilter(
        project=project.upper() if project else None,
        status=text("status"),
        assignee=text("assignee"),
        issue_type=text("type"),
        priority=text("priority"),
        label=text("label"),
        text=text("q"),
        updated_since=text("updated_since"),
    )


@routes.get("/api/tickets")
async def list_tickets(request: web.Request) -> web.Response:
    limit = query_int(request, "limit", 50, low=1, high=500)
    offset = query_int(request, "offset", 0, low=0, high=10_000_000)
    found, total = await tickets.list_tickets(
        request.app[SERVICES].db, _filter(request), limit=limit, offset=offset
    )
    return web.json_response(
        {
            "tickets": [ticket.as_json() for ticket in found],
            "total": total,
            "limit": limit,
            "offset": offset,
            "next_offset": offset + len(found) if offset + len(found) < total else None,
        }
    )


@routes.get("/api/tickets/stats")
async def ticket_stats(request: web.Request) -> web.Response:
    db = request.app[SERVICES].db
    stats = await tickets.counts(db)
    runs = await jira_sync.recent_runs(db, limit=200)
    latest: dict[str, dict[str, Any]] = {}
    for run in runs:
        latest.setdefault(run.project, run.as_json())
    stats["sync"] = {"latest": latest, "recent": [run.as_json() for run in runs[:20]]}
    return web.json_response(stats)


class SyncBody(msgspec.Struct):
    """POST /api/tickets/sync (optional)."""

    project: str | None = None
    full: bool = False
    wait: bool = False


@routes.post("/api/tickets/sync")
async def start_sync(request: web.Request) -> web.Response:
    """Body (optional): {"project": "PROJ", "full": false, "wait": false}.

    Without a project, every project in scope. 202 with the started runs (or 200 with their
    results when `wait` is true); 409 when the one project asked for is already syncing.
    """
    jira = jira_of(request)
    # "bad_parameter" for a bad field: the code this route answered before web/bodies.py.
    body = await read_json(request, SyncBody, invalid="bad_parameter", optional=True)
    try:
        started = await jira.start_manual_sync(body.project, full=body.full, wait=body.wait)
    except JiraError as error:
        raise ApiError(502, "jira_error", str(error)) from None
    except SyncAlreadyRunning as busy:
        raise ApiError(409, "sync_running", str(busy)) from None
    except ValueError as error:  # not a project key
        raise ApiError(400, "bad_parameter", str(error)) from None
    return web.json_response(
        {"runs": started.runs, "skipped": started.skipped}, status=200 if started.waited else 202
    )


async def _ticket_or_404(request: web.Request) -> tickets.Ticket:
    key = request.match_info["key"].upper()
    found = await tickets.get_ticket(request.app[SERVICES].db, key)
    if found is None:
        raise ApiError(404, "not_found", f"no ticket {key} in the mirror")
    return found


@routes.get(f"/api/tickets/{{key:{KEY_PATTERN}}}")
async def get_ticket(request: web.Request) -> web.Response:
    ticket = await _ticket_or_404(request)
    db = request.app[SERVICES].db
    body = ticket.as_json()
    body["links"] = [link.as_json() for link in await tickets.links_of(db, ticket.id)]
    body["attachments"] = [a.as_json() for a in await tickets.attachments_of(db, ticket.id)]
    return web.json_response(body)


@routes.get(f"/api/tickets/{{key:{KEY_PATTERN}}}/related")
async def related_tickets(request: web.Request) -> web.Response:
    """Links (both directions), the parent and the sub-tasks, with what the mirror knows."""
    ticket = await _ticket_or_404(request)
    related = await related_of(request.app[SERVICES].db, ticket)
    return web.json_response(related.as_json(ticket.key))


def _content_disposition(filename: str) -> str:
    fallback = re.sub(r"[^A-Za-z0-9._ -]", "_", filename)[:200] or "attachment"
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename)}"


@routes.get(f"/api/tickets/{{key:{KEY_PATTERN}}}/attachments/{{attachment_id:[0-9]+}}")
async def attachment_content(request: web.Request) -> web.StreamResponse:
    jira = jira_of(request)
    key = request.match_info["key"].upper()
    attachment_id = request.match_info["attachment_id"]
    meta = await tickets.attachment_of(request.app[SERVICES].db, key, attachment_id)
    if meta is None:
        raise ApiError(404, "not_found", f"{key} has no attachment {attachment_id} in the mirror")
    limit = jira.attachment_max_bytes
    if meta.size is not None and meta.size > limit:
        raise ApiError(413, "too_large", f"attachment is {meta.size} bytes; the limit is {limit}")
    try:
        stream = await jira.client.open_attachment(meta.content_url, meta.id)
    except JiraError as error:
        raise ApiError(502, "jira_error", str(error)) from None
    try:
        if stream.content_length is not None and stream.content_length > limit:
            raise ApiError(
                413,
                "too_large",
                f"attachment is {stream.content_length} bytes; the limit is {limit}",
            )
        content_type = (stream.content_type or meta.mime_type or "").split(";")[0].strip()
        response = web.StreamResponse(
            headers={
                "Content-Type": content_type
                if _MIME.match(content_type)
                else "application/octet-stream",
                "Content-Disposition": _content_disposition(meta.filename),
                "X-Content-Type-Options": "nosniff",
                "Content-Security-Policy": "sandbox; default-src 'none'",
                "Cache-Control": "private, max-age=300",
            }
        )
        if stream.content_length is not None:
            response.content_length = stream.content_length
        await response.prepare(request)
        sent = 0
        try:
            async for chunk in stream.chunks():
                sent += len(chunk)
                if sent > limit:
                    raise JiraError(f"attachment passed the {limit}-byte limit while streaming")
                await response.write(chunk)
        except JiraError as error:
            # The headers are gone already: cut the connection so the client sees a short read.
            log.warning("attachment %s of %s cut off after %d bytes: %s", meta.id, key, sent, error)
            if request.transport is not None:
                request.transport.close()
            return response
        await response.write_eof()
        return response
    finally:
        stream.close()
