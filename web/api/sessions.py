"""/api/sessions: browser sessions, their tabs and UI state, restore and offline events
(docs/sessions.md, README: API).

- `POST /api/sessions` -> 201 `{"session"}` (and the session cookie); `GET /api/sessions/current`
  (the session of the cookie, 404 `no_session` without one); `GET /api/sessions/{id}`
- `GET|PUT /api/sessions/{id}/tabs` `{"tabs": [{"kind", "ref"}]}`;
  `GET|PUT /api/sessions/{id}/ui-state` `{"ui_state": {...}}` (16 KiB as JSON at most: 413);
  `PATCH /api/sessions/{id}/ui-state` `{"pages": {path: {...} | null}}`: those pages' parts
  merged into `ui_state.pages` (what a page sends, so two windows do not undo each other)
- `POST /api/sessions/{id}/restore` `{"token_after": {stream: seq}}`? -> tabs, UI state, the
  pipelines and pull requests shown with their current state, unread offline events, token
  catch-up of running steps, and the `epoch`/`last_id` to subscribe from
- `GET /api/sessions/{id}/offline-events`; `POST /api/sessions/{id}/acknowledge-events`
  `{"up_to": id}` or `{"ids": [...]}`

A session of another token is 404, as one that never was. Bodies are read before the session is
looked up, so a bad body is a 400 whatever the id.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Annotated, Any

import msgspec
from aiohttp import web

from bot.sessions.book import PAGES_KEPT, SessionNotFound, UiStateTooLarge
from bot.sessions.restore import offline_view
from bot.sessions.service import Sessions
from bot.sessions.tabs import BadTab, Tab
from storage.sessions import SessionRow
from web.bodies import INVALID_FIELD, RowId, read_json
from web.errors import DB_INT_MAX, ApiError
from web.keys import SESSIONS
from web.session_cookie import cookie_session, set_session_cookie

routes = web.RouteTableDef()

SESSION = r"/api/sessions/{session_id:[A-Za-z0-9_-]{1,64}}"
Seq = Annotated[int, msgspec.Meta(ge=0, le=DB_INT_MAX)]


class CreateBody(msgspec.Struct, forbid_unknown_fields=True):
    """POST /api/sessions takes no fields; the body may be empty."""


class TabsBody(msgspec.Struct, forbid_unknown_fields=True):
    tabs: list[Tab]


class UiStateBody(msgspec.Struct, forbid_unknown_fields=True):
    ui_state: dict[str, Any]


PagePath = Annotated[str, msgspec.Meta(min_length=1, max_length=300)]


class PagesBody(msgspec.Struct, forbid_unknown_fields=True):
    pages: Annotated[dict[PagePath, dict[str, Any] | None], msgspec.Meta(max_length=PAGES_KEPT)]


class RestoreBody(msgspec.Struct, forbid_unknown_fields=True):
    # per stream, the last token seq the page holds: catch-up starts after it
    token_after: dict[Annotated[str, msgspec.Meta(max_length=300)], Seq] = msgspec.field(
        default_factory=dict
    )


class AcknowledgeBody(msgspec.Struct, forbid_unknown_fields=True):
    up_to: RowId | None = None
    ids: Annotated[list[RowId], msgspec.Meta(max_length=1000)] = msgspec.field(default_factory=list)


def _sessions(request: web.Request) -> Sessions:
    return request.app[SESSIONS]


def _session_id(request: web.Request) -> str:
    return request.match_info["session_id"]


def _json(body: Any, status: int = 200) -> web.Response:
    return web.Response(
        body=msgspec.json.encode(body), status=status, content_type="application/json"
    )


async def _view(sessions: Sessions, row: SessionRow) -> dict[str, Any]:
    return {
        "id": row.id,
        "created_at": row.created_at,
        "updated_at": row.updated_at,
        "last_seen_at": row.last_seen_at,
        "unread": await sessions.inbox.count(row.id),
    }


@contextlib.contextmanager
def _answered(request: web.Request) -> Iterator[None]:
    """The sessions' refusals as API errors: a session not this token's is 404."""
    try:
        yield
    except SessionNotFound:
        raise ApiError(404, "not_found", f"no session {_session_id(request)}") from None
    except BadTab as error:
        raise ApiError(400, INVALID_FIELD, str(error)) from None
    except UiStateTooLarge as error:
        raise ApiError(413, "too_large", str(error)) from None


@routes.post("/api/sessions")
async def create_session(request: web.Request) -> web.Response:
    await read_json(request, CreateBody, optional=True)
    sessions = _sessions(request)
    made = await sessions.book.create()
    response = _json({"session": await _view(sessions, made)}, status=201)
    set_session_cookie(request, response, made.id)
    return response


@routes.get("/api/sessions/current")
async def current_session(request: web.Request) -> web.Response:
    sessions, named = _sessions(request), cookie_session(request)
    if named is None:
        raise ApiError(404, "no_session", "no session cookie: POST /api/sessions makes one")
    try:
        row = await sessions.book.find(named)
    except SessionNotFound:
        message = "the session cookie names no session of this token"
        raise ApiError(404, "no_session", message) from None
    return _json({"session": await _view(sessions, row)})


@routes.get(SESSION)
async def get_session(request: web.Request) -> web.Response:
    sessions = _sessions(request)
    with _answered(request):
        row = await sessions.book.find(_session_id(request))
    return _json({"session": await _view(sessions, row)})


@routes.get(SESSION + "/tabs")
async def get_tabs(request: web.Request) -> web.Response:
    with _answered(request):
        return _json({"tabs": await _sessions(request).book.tabs(_session_id(request))})


@routes.put(SESSION + "/tabs")
async def put_tabs(request: web.Request) -> web.Response:
    body = await read_json(request, TabsBody)
    with _answered(request):
        stored = await _sessions(request).book.set_tabs(_session_id(request), body.tabs)
    return _json({"tabs": stored})


@routes.get(SESSION + "/ui-state")
async def get_ui_state(request: web.Request) -> web.Response:
    with _answered(request):
        return _json({"ui_state": await _sessions(request).book.ui_state(_session_id(request))})


@routes.put(SESSION + "/ui-state")
async def put_ui_state(request: web.Request) -> web.Response:
    body = await read_json(request, UiStateBody)
    with _answered(request):
        stored = await _sessions(request).book.set_ui_state(_session_id(request), body.ui_state)
    return _json({"ui_state": stored})


@routes.patch(SESSION + "/ui-state")
async def patch_ui_state(request: web.Request) -> web.Response:
    body = await read_json(request, PagesBody)
    with _answered(request):
        stored = await _sessions(request).book.merge_pages(_session_id(request), body.pages)
    return _json({"ui_state": stored})


@routes.post(SESSION + "/restore")
async def restore(request: web.Request) -> web.Response:
    body = await read_json(request, RestoreBody, optional=True)
    with _answered(request):
        restorer = _sessions(request).restorer
        return _json(await restorer.restore(_session_id(request), body.token_after))


@routes.get(SESSION + "/offline-events")
async def offline_events(request: web.Request) -> web.Response:
    sessions, session_id = _sessions(request), _session_id(request)
    with _answered(request):
        await sessions.book.find(session_id)
    unread = await sessions.inbox.unread(session_id)
    views = [offline_view(row) for row in unread.events]
    return _json({"offline_events": views, "unread": unread.count})


@routes.post(SESSION + "/acknowledge-events")
async def acknowledge_events(request: web.Request) -> web.Response:
    body = await read_json(request, AcknowledgeBody)
    if body.up_to is None and not body.ids:
        raise ApiError(400, INVALID_FIELD, "up_to: give up_to (an offline event id) or ids")
    sessions, session_id = _sessions(request), _session_id(request)
    with _answered(request):
        await sessions.book.find(session_id)
    gone = await sessions.inbox.acknowledge(session_id, up_to=body.up_to, ids=body.ids)
    return _json({"acknowledged": gone, "unread": await sessions.inbox.count(session_id)})
